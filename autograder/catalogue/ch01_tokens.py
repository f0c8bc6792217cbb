"""Wrong implementations for Chapter 1 (Tokens): the mistakes learners make when they write a BPE tokenizer.

Each source replaces a whole solution cell of ``solutions/ch01_tokens/tokens.ipynb`` and is written the way a learner
would write it. The cells of the other exercises keep the reference solution, so a wrong ``count_pairs`` is judged
by its own hidden tests, not by the failures it causes downstream.
"""

from textwrap import dedent

from . import Catalogue

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


# --- Exercise 1: count_pairs ------------------------------------------------------------------------------------
EX1 = "ex1_count_pairs"

_wrong(EX1, "count_pairs_non_overlapping", "steps two ids at a time, so [7, 7, 7] holds (7, 7) only once", '''
    def count_pairs(ids):
        counts = {}
        for i in range(0, len(ids) - 1, 2):
            pair = (ids[i], ids[i + 1])
            counts[pair] = counts.get(pair, 0) + 1
        return counts
''')

_wrong(EX1, "count_pairs_set", "collects the pairs in a set: every pair counts 1, whatever its frequency", '''
    def count_pairs(ids):
        return {pair: 1 for pair in set(zip(ids, ids[1:]))}
''')

_wrong(EX1, "count_pairs_misses_last_pair", "range(len(ids) - 2): the last adjacent pair is never counted", '''
    def count_pairs(ids):
        counts = {}
        for i in range(len(ids) - 2):
            pair = (ids[i], ids[i + 1])
            counts[pair] = counts.get(pair, 0) + 1
        return counts
''')

_wrong(EX1, "count_pairs_unordered", "treats (a, b) and (b, a) as the same pair", '''
    def count_pairs(ids):
        counts = {}
        for a, b in zip(ids, ids[1:]):
            pair = (min(a, b), max(a, b))
            counts[pair] = counts.get(pair, 0) + 1
        return counts
''')

_wrong(EX1, "count_pairs_mutable_default", "a default argument counts={} is shared, so counts pile up across calls", '''
    def count_pairs(ids, counts={}):
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
        return counts
''')

_wrong(EX1, "count_pairs_shared_dict",
       "reuses one module-level dict: a result changes when the function is called again", '''
    _counts = {}


    def count_pairs(ids):
        _counts.clear()
        for pair in zip(ids, ids[1:]):
            _counts[pair] = _counts.get(pair, 0) + 1
        return _counts
''')

_wrong(EX1, "count_pairs_string_search",
       "searches the ids written as text, so the pair (1, 2) is also found in '11,2'", '''
    import re


    def count_pairs(ids):
        text = ",".join(str(i) for i in ids)
        counts = {}
        for a, b in set(zip(ids, ids[1:])):
            counts[(a, b)] = len(re.findall(f"(?={a},{b})", text))
        return counts
''')

_wrong(EX1, "count_pairs_memoised",
       "remembers the dict of each list it has seen: two calls with the same ids share one dict", '''
    _seen = {}


    def count_pairs(ids):
        key = tuple(ids)
        if key not in _seen:  # training counts the same chunks again and again: count each list once
            counts = {}
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
            _seen[key] = counts
        return _seen[key]
''')

_wrong(EX1, "count_pairs_numpy", "np.unique over the stacked pairs: keys and counts are NumPy integers", '''
    import numpy as np


    def count_pairs(ids):
        if len(ids) < 2:
            return {}
        a = np.array(ids)
        pairs, counts = np.unique(np.stack([a[:-1], a[1:]], axis=1), axis=0, return_counts=True)
        return {tuple(pair): n for pair, n in zip(pairs, counts)}
''')

# --- Exercise 2: merge ------------------------------------------------------------------------------------------
EX2 = "ex2_merge"

_wrong(EX2, "merge_no_skip", "after merging, moves on by one instead of two, so the pair's second id stays", '''
    def merge(ids, pair, new_id):
        out = []
        i = 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
            else:
                out.append(ids[i])
            i += 1
        return out
''')

_wrong(EX2, "merge_generator", "yields the merged ids one by one: a generator, not the new list the spec asks for", '''
    def merge(ids, pair, new_id):
        i = 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                yield new_id
                i += 2
            else:
                yield ids[i]
                i += 1
''')

_wrong(EX2, "merge_overlapping", "finds every start of the pair first, so [7, 7, 7] becomes [99, 99]", '''
    def merge(ids, pair, new_id):
        starts = [i for i in range(len(ids) - 1) if (ids[i], ids[i + 1]) == pair]
        covered = set(starts) | {i + 1 for i in starts}
        out = []
        for i, x in enumerate(ids):
            if i in starts:
                out.append(new_id)
            elif i not in covered:
                out.append(x)
        return out
''')

_wrong(EX2, "merge_right_to_left", "scans from the right, so [7, 7, 7] becomes [7, 99]", '''
    def merge(ids, pair, new_id):
        out = []
        i = len(ids) - 1
        while i >= 0:
            if i > 0 and (ids[i - 1], ids[i]) == pair:
                out.append(new_id)
                i -= 2
            else:
                out.append(ids[i])
                i -= 1
        return out[::-1]
''')

_wrong(EX2, "merge_in_blocks_of_two", "always steps by two, so a pair that starts at an odd position is missed", '''
    def merge(ids, pair, new_id):
        out = []
        i = 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
            else:
                out.extend([ids[i], ids[i + 1]])
            i += 2
        if i == len(ids) - 1:
            out.append(ids[-1])
        return out
''')

_wrong(EX2, "merge_drops_last_id", "the loop stops one short and the last id is lost when it is not merged", '''
    def merge(ids, pair, new_id):
        out = []
        i = 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out
''')

_wrong(EX2, "merge_in_place", "edits the caller's list in place (and returns it)", '''
    def merge(ids, pair, new_id):
        i = 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                ids[i:i + 2] = [new_id]
            i += 1
        return ids
''')

_wrong(EX2, "merge_first_only", "replaces only the first occurrence of the pair", '''
    def merge(ids, pair, new_id):
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                return ids[:i] + [new_id] + ids[i + 2:]
        return list(ids)
''')

_wrong(EX2, "merge_string_replace", "str.replace on the ids written as text: '1,2' also matches inside '11,2'", '''
    def merge(ids, pair, new_id):
        text = ",".join(str(i) for i in ids)
        text = text.replace(f"{pair[0]},{pair[1]}", str(new_id))
        return [int(x) for x in text.split(",")] if text else []
''')

_wrong(EX2, "merge_returns_input_when_absent", "a shortcut hands back the given list when the pair does not occur", '''
    def merge(ids, pair, new_id):
        if pair not in zip(ids, ids[1:]):
            return ids  # nothing to merge
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out
''')

# --- Exercise 3: train_merges -----------------------------------------------------------------------------------
EX3 = "ex3_train_merges"

# The reference training loop; each wrong version below changes one piece of it (the keyword argument of _train).
_TRAIN = '''
    def train_merges(text, vocab_size):
        from collections import Counter

        chunk_counts = Counter(chunk.encode("utf-8") for chunk in {chunks})
        chunks = [{to_ids} for chunk in chunk_counts]
        weights = {weights}
        merges = []
        for new_id in range({first_id}, {last_id}):
            counts = {{}}
            for chunk, weight in zip(chunks, weights):
                for pair, n in count_pairs(chunk).items():
                    counts[pair] = counts.get(pair, 0) + n * weight
            {stop}
            best = {best}
            merges.append(best)
            chunks = [merge(chunk, best, new_id) for chunk in chunks]
        return merges
'''
_OK = dict(chunks="regex.findall(GPT2_SPLIT_PATTERN, text)", to_ids="list(chunk)",
           weights="list(chunk_counts.values())", first_id="256", last_id="vocab_size",
           stop="if not counts:\n            break",
           best="min(counts, key=lambda pair: (-counts[pair], pair))")


def _train(**change: str) -> str:
    source = dedent(_TRAIN).format(**{**_OK, **change})
    return "\n".join(line for line in source.splitlines() if line.strip() or not line)  # drop emptied lines


_wrong(EX3, "train_no_pretokenization", "trains on the text's bytes as one sequence: pairs cross chunk boundaries",
       _train(chunks="[text]"))
_wrong(EX3, "train_split_on_whitespace", "pre-tokenizes with text.split(), so the spaces disappear from the tokens",
       _train(chunks="text.split()"))
_wrong(EX3, "train_drops_whitespace_chunks", "skips the whitespace-only chunks (newlines, runs of spaces)",
       _train(chunks="(c for c in regex.findall(GPT2_SPLIT_PATTERN, text) if c.strip())"))
_wrong(EX3, "train_ties_to_largest", "breaks ties toward the largest pair",
       _train(best="max(counts, key=lambda pair: (counts[pair], pair))"))
_wrong(EX3, "train_ties_first_seen", "max(counts, key=counts.get): ties go to whichever pair was counted first",
       _train(best="max(counts, key=counts.get)"))
_wrong(EX3, "train_ties_as_text", "compares tied pairs as strings, so (256, 97) sorts before (97, 98)",
       _train(best="min(counts, key=lambda pair: (-counts[pair], str(pair)))"))
_wrong(EX3, "train_ties_first_id_only", "reads 'the smallest pair' as the smallest first id; ties on it stay unbroken",
       _train(best="min(counts, key=lambda pair: (-counts[pair], pair[0]))"))
_wrong(EX3, "train_vocab_off_by_one", "learns vocab_size - 255 merges", _train(last_id="vocab_size + 1"))
_wrong(EX3, "train_new_ids_off_by_one",
       "numbers the new tokens from 257", _train(first_id="257", last_id="vocab_size + 1"))
_wrong(EX3, "train_ignores_chunk_frequency", "counts each distinct chunk once, however often it occurs",
       _train(weights="[1] * len(chunk_counts)"))
_wrong(EX3, "train_characters_not_bytes", "uses ord() of the characters instead of the UTF-8 bytes",
       _train(to_ids="[ord(c) for c in chunk.decode('utf-8')]"))
_wrong(EX3, "train_no_early_stop", "does not stop when nothing is left to merge (min() of an empty dict)",
       _train(stop=""))

_wrong(EX3, "train_counts_once", "counts the pairs once and takes the top ones, never re-counting after a merge", '''
    def train_merges(text, vocab_size):
        counts = {}
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            for pair, n in count_pairs(list(chunk.encode("utf-8"))).items():
                counts[pair] = counts.get(pair, 0) + n
        ranked = sorted(counts, key=lambda pair: (-counts[pair], pair))
        return ranked[:vocab_size - 256]
''')

_wrong(EX3, "train_cache_by_text",
       "caches the merges by text only: the same text with another vocab_size gets the old merges", '''
    _trained = {}


    def train_merges(text, vocab_size):
        if text in _trained:  # training is slow: remember what each text gave
            return _trained[text]
        from collections import Counter

        chunk_counts = Counter(chunk.encode("utf-8") for chunk in regex.findall(GPT2_SPLIT_PATTERN, text))
        chunks = [list(chunk) for chunk in chunk_counts]
        weights = list(chunk_counts.values())
        merges = []
        for new_id in range(256, vocab_size):
            counts = {}
            for chunk, weight in zip(chunks, weights):
                for pair, n in count_pairs(chunk).items():
                    counts[pair] = counts.get(pair, 0) + n * weight
            if not counts:
                break
            best = min(counts, key=lambda pair: (-counts[pair], pair))
            merges.append(best)
            chunks = [merge(chunk, best, new_id) for chunk in chunks]
        _trained[text] = merges
        return merges
''')

_wrong(EX3, "train_numpy_pair_matrix",
       "counts the pairs in a NumPy matrix and takes argmax: the pairs are tuples of NumPy integers", '''
    import numpy as np


    def train_merges(text, vocab_size):
        from collections import Counter

        chunk_counts = Counter(chunk.encode("utf-8") for chunk in regex.findall(GPT2_SPLIT_PATTERN, text))
        chunks = [list(chunk) for chunk in chunk_counts]
        weights = list(chunk_counts.values())
        merges = []
        for new_id in range(256, vocab_size):
            counts = np.zeros((new_id, new_id), dtype=np.int64)  # counts[a, b]: how often a is followed by b
            for chunk, weight in zip(chunks, weights):
                for a, b in zip(chunk, chunk[1:]):
                    counts[a, b] += weight
            if counts.max() == 0:
                break
            a, b = np.unravel_index(counts.argmax(), counts.shape)  # the first maximum: the smallest pair wins ties
            merges.append((a, b))
            chunks = [merge(chunk, (a, b), new_id) for chunk in chunks]
        return merges
''')

_wrong(EX3, "train_memo_by_length",
       "remembers its merges under (len(text), vocab_size): another text of the same length gets them too", '''
    _memo = {}


    def train_merges(text, vocab_size):
        key = (len(text), vocab_size)  # cheaper to hash than the whole text
        if key in _memo:
            return list(_memo[key])
        from collections import Counter

        chunk_counts = Counter(chunk.encode("utf-8") for chunk in regex.findall(GPT2_SPLIT_PATTERN, text))
        chunks = [list(chunk) for chunk in chunk_counts]
        weights = list(chunk_counts.values())
        merges = []
        for new_id in range(256, vocab_size):
            counts = {}
            for chunk, weight in zip(chunks, weights):
                for pair, n in count_pairs(chunk).items():
                    counts[pair] = counts.get(pair, 0) + n * weight
            if not counts:
                break
            best = min(counts, key=lambda pair: (-counts[pair], pair))
            merges.append(best)
            chunks = [merge(chunk, best, new_id) for chunk in chunks]
        _memo[key] = merges
        return list(merges)
''')

_wrong(EX3, "train_memo_hands_out_its_list",
       "functools.lru_cache on train_merges: the same text and vocab_size give the very same list every time", '''
    from collections import Counter
    from functools import lru_cache


    @lru_cache(maxsize=None)
    def train_merges(text, vocab_size):
        chunk_counts = Counter(chunk.encode("utf-8") for chunk in regex.findall(GPT2_SPLIT_PATTERN, text))
        chunks = [list(chunk) for chunk in chunk_counts]
        weights = list(chunk_counts.values())
        merges = []
        for new_id in range(256, vocab_size):
            counts = {}
            for chunk, weight in zip(chunks, weights):
                for pair, n in count_pairs(chunk).items():
                    counts[pair] = counts.get(pair, 0) + n * weight
            if not counts:
                break
            best = min(counts, key=lambda pair: (-counts[pair], pair))
            merges.append(best)
            chunks = [merge(chunk, best, new_id) for chunk in chunks]
        return merges
''')

_wrong(EX3, "train_reuses_one_list",
       "fills one module-level list, cleared at the start of each call: an earlier result changes", '''
    from collections import Counter

    MERGES = []  # the merges learned last


    def train_merges(text, vocab_size):
        MERGES.clear()
        chunk_counts = Counter(chunk.encode("utf-8") for chunk in regex.findall(GPT2_SPLIT_PATTERN, text))
        chunks = [list(chunk) for chunk in chunk_counts]
        weights = list(chunk_counts.values())
        for new_id in range(256, vocab_size):
            counts = {}
            for chunk, weight in zip(chunks, weights):
                for pair, n in count_pairs(chunk).items():
                    counts[pair] = counts.get(pair, 0) + n * weight
            if not counts:
                break
            best = min(counts, key=lambda pair: (-counts[pair], pair))
            MERGES.append(best)
            chunks = [merge(chunk, best, new_id) for chunk in chunks]
        return MERGES
''')

# --- Exercise 4: encode and decode ------------------------------------------------------------------------------
EX4 = "ex4_encode_decode"

_ENCODE_OK = '''
def encode(text, merges):
    rank = {pair: 256 + i for i, pair in enumerate(merges)}
    ids = []
    for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
        tokens = list(chunk.encode("utf-8"))
        while len(tokens) >= 2:
            pair = min(zip(tokens, tokens[1:]), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                break
            tokens = merge(tokens, pair, rank[pair])
        ids.extend(tokens)
    return ids
'''

_VOCAB = '''
def token_bytes(merges):
    vocab = [bytes([b]) for b in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    return vocab
'''

_DECODE_OK = _VOCAB + '''

def decode(ids, merges):
    vocab = token_bytes(merges)
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
'''


def _encode_wrong(name: str, why: str, wrong_encode: str) -> None:
    _wrong(EX4, name, why, dedent(wrong_encode).strip() + "\n\n\n" + _DECODE_OK.strip())


def _decode_wrong(name: str, why: str, wrong_decode: str) -> None:
    _wrong(EX4, name, why, _ENCODE_OK.strip() + "\n\n\n" + dedent(wrong_decode).strip())


def _with_vocab(source: str) -> str:
    """``source`` preceded by the helper ``token_bytes(merges)`` (id -> bytes), which the learner wrote correctly."""
    return _VOCAB.strip() + "\n\n\n" + dedent(source).strip()


_encode_wrong("encode_generator", "yields each chunk's ids: a generator, not a list", '''
    def encode(text, merges):
        rank = {pair: 256 + i for i, pair in enumerate(merges)}
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = list(chunk.encode("utf-8"))
            while len(tokens) >= 2:
                pair = min(zip(tokens, tokens[1:]), key=lambda p: rank.get(p, float("inf")))
                if pair not in rank:
                    break
                tokens = merge(tokens, pair, rank[pair])
            yield from tokens
''')

_encode_wrong("encode_cache_by_text",
              "caches the ids by text only: the same text with other merges gets the old ids", '''
    _encoded = {}


    def encode(text, merges):
        if text in _encoded:  # encoding is slow: remember the ids of each text
            return list(_encoded[text])
        rank = {pair: 256 + i for i, pair in enumerate(merges)}
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = list(chunk.encode("utf-8"))
            while len(tokens) >= 2:
                pair = min(zip(tokens, tokens[1:]), key=lambda p: rank.get(p, float("inf")))
                if pair not in rank:
                    break
                tokens = merge(tokens, pair, rank[pair])
            ids.extend(tokens)
        _encoded[text] = ids
        return list(ids)
''')

_encode_wrong("encode_most_frequent_first", "at encode time merges the most frequent pair, as in training", '''
    def encode(text, merges):
        rank = {pair: 256 + i for i, pair in enumerate(merges)}
        chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT2_SPLIT_PATTERN, text)]
        while True:
            counts = {}
            for tokens in chunks:
                for pair in zip(tokens, tokens[1:]):
                    if pair in rank:
                        counts[pair] = counts.get(pair, 0) + 1
            if not counts:
                break
            pair = max(counts, key=counts.get)
            chunks = [merge(tokens, pair, rank[pair]) for tokens in chunks]
        return [i for tokens in chunks for i in tokens]
''')

_encode_wrong("encode_merges_reversed", "applies the merges latest-learned first", '''
    def encode(text, merges):
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = list(chunk.encode("utf-8"))
            for i in reversed(range(len(merges))):
                tokens = merge(tokens, merges[i], 256 + i)
            ids.extend(tokens)
        return ids
''')

_encode_wrong("encode_leftmost_pair_first",
              "merges the leftmost pair that has a merge, not the earliest-learned one", '''
    def encode(text, merges):
        rank = {pair: 256 + i for i, pair in enumerate(merges)}
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = list(chunk.encode("utf-8"))
            merged = True
            while merged:
                merged = False
                for j in range(len(tokens) - 1):
                    if (tokens[j], tokens[j + 1]) in rank:
                        tokens = tokens[:j] + [rank[(tokens[j], tokens[j + 1])]] + tokens[j + 2:]
                        merged = True
                        break
            ids.extend(tokens)
        return ids
''')

_encode_wrong("encode_longest_match", "greedy longest-match against the vocabulary instead of replaying the merges", '''
    def encode(text, merges):
        vocab = [bytes([b]) for b in range(256)]
        for a, b in merges:
            vocab.append(vocab[a] + vocab[b])
        lookup = {token: i for i, token in enumerate(vocab)}
        longest = max(len(token) for token in vocab)
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            data = chunk.encode("utf-8")
            i = 0
            while i < len(data):
                for size in range(min(longest, len(data) - i), 0, -1):
                    if data[i:i + size] in lookup:
                        ids.append(lookup[data[i:i + size]])
                        i += size
                        break
        return ids
''')

_encode_wrong("encode_stops_at_missing_merge",
              "walks the merges in order but stops at the first one absent from the chunk", '''
    def encode(text, merges):
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = list(chunk.encode("utf-8"))
            for i, pair in enumerate(merges):
                if pair not in set(zip(tokens, tokens[1:])):
                    break
                tokens = merge(tokens, pair, 256 + i)
            ids.extend(tokens)
        return ids
''')

_encode_wrong("encode_no_pretokenization", "merges across the whole text, ignoring the GPT-2 chunks", '''
    def encode(text, merges):
        rank = {pair: 256 + i for i, pair in enumerate(merges)}
        tokens = list(text.encode("utf-8"))
        while len(tokens) >= 2:
            pair = min(zip(tokens, tokens[1:]), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                break
            tokens = merge(tokens, pair, rank[pair])
        return tokens
''')

_encode_wrong("encode_characters_not_bytes", "no byte fallback: starts from ord() of each character", '''
    def encode(text, merges):
        rank = {pair: 256 + i for i, pair in enumerate(merges)}
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = [ord(c) for c in chunk]
            while len(tokens) >= 2:
                pair = min(zip(tokens, tokens[1:]), key=lambda p: rank.get(p, float("inf")))
                if pair not in rank:
                    break
                tokens = merge(tokens, pair, rank[pair])
            ids.extend(tokens)
        return ids
''')

_decode_wrong("decode_each_token",
              "decodes every token on its own, which breaks characters split over tokens", _with_vocab('''

    def decode(ids, merges):
        vocab = token_bytes(merges)
        return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)
'''))

_decode_wrong("decode_strict", "decodes with errors='strict': a cut-off character raises", _with_vocab('''

    def decode(ids, merges):
        vocab = token_bytes(merges)
        return b"".join(vocab[i] for i in ids).decode("utf-8")
'''))

_decode_wrong("decode_ignore", "decodes with errors='ignore': a cut-off character silently vanishes", _with_vocab('''

    def decode(ids, merges):
        vocab = token_bytes(merges)
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")
'''))

_decode_wrong("decode_bytes_as_characters",
              "turns each byte into chr(byte) (Latin-1) instead of decoding UTF-8", _with_vocab('''

    def decode(ids, merges):
        vocab = token_bytes(merges)
        return "".join(chr(b) for i in ids for b in vocab[i])
'''))

_decode_wrong("decode_one_level",
              "builds merged tokens as bytes([a, b]), which fails when a merge joins merged tokens", '''
    def decode(ids, merges):
        vocab = {i: bytes([i]) for i in range(256)}
        for i, (a, b) in enumerate(merges):
            vocab[256 + i] = bytes([a, b])
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
''')

_decode_wrong("decode_pops_ids", "todo = ids is no copy: expanding the ids in place empties the caller's list", '''
    def decode(ids, merges):
        todo = ids  # the ids still to expand, first one first
        data = bytearray()
        while todo:
            i = todo.pop(0)
            if i < 256:
                data.append(i)
            else:
                todo[:0] = merges[i - 256]  # a merged token stands for its two parts
        return data.decode("utf-8", errors="replace")
''')

_encode_wrong("encode_ranks_kept_by_count",
              "builds the pair ranks once per number of merges: another list of as many merges gets the old ranks", '''
    _ranks = {}


    def encode(text, merges):
        if len(merges) not in _ranks:  # the ranks only change when training learned more merges
            _ranks[len(merges)] = {pair: 256 + i for i, pair in enumerate(merges)}
        rank = _ranks[len(merges)]
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = list(chunk.encode("utf-8"))
            while len(tokens) >= 2:
                pair = min(zip(tokens, tokens[1:]), key=lambda p: rank.get(p, float("inf")))
                if pair not in rank:
                    break
                tokens = merge(tokens, pair, rank[pair])
            ids.extend(tokens)
        return ids
''')

_decode_wrong("decode_table_kept_by_count",
              "keeps the bytes table of each vocabulary size: another list of as many merges reuses it", '''
    _tables = {}


    def decode(ids, merges):
        size = 256 + len(merges)
        if size not in _tables:  # building the table every call is wasteful
            table = [bytes([b]) for b in range(256)]
            for a, b in merges:
                table.append(table[a] + table[b])
            _tables[size] = table
        table = _tables[size]
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")
''')

# --- Exercise 5: encode_with_special ----------------------------------------------------------------------------
EX5 = "ex5_special_tokens"

_wrong(EX5, "special_ignored", "encodes the special strings as ordinary text", '''
    def encode_with_special(text, merges, special_tokens):
        return encode(text, merges)
''')

_wrong(EX5, "special_tuple", "returns the ids as a tuple, not the list the spec asks for", '''
    def encode_with_special(text, merges, special_tokens):
        if not special_tokens:
            return tuple(encode(text, merges))
        longest_first = sorted(special_tokens, key=len, reverse=True)
        parts = regex.split("(" + "|".join(regex.escape(s) for s in longest_first) + ")", text)
        ids = []
        for i, part in enumerate(parts):
            ids.extend([special_tokens[part]] if i % 2 else encode(part, merges))
        return tuple(ids)
''')

_wrong(EX5, "special_split_without_group", "re.split without a capturing group: the special tokens vanish", '''
    def encode_with_special(text, merges, special_tokens):
        if not special_tokens:
            return encode(text, merges)
        pattern = "|".join(regex.escape(s) for s in special_tokens)
        ids = []
        for part in regex.split(pattern, text):
            ids.extend(encode(part, merges))
        return ids
''')

_wrong(EX5, "special_not_escaped", "builds the pattern without regex.escape, so '|' in '<|endoftext|>' means 'or'", '''
    def encode_with_special(text, merges, special_tokens):
        if not special_tokens:
            return encode(text, merges)
        pattern = "(" + "|".join(sorted(special_tokens, key=len, reverse=True)) + ")"
        ids = []
        for part in regex.split(pattern, text):
            if part in special_tokens:
                ids.append(special_tokens[part])
            elif part:
                ids.extend(encode(part, merges))
        return ids
''')

_wrong(EX5, "special_shorter_first", "tries the special strings in dictionary order, so a shorter prefix wins", '''
    def encode_with_special(text, merges, special_tokens):
        if not special_tokens:
            return encode(text, merges)
        pattern = "(" + "|".join(regex.escape(s) for s in special_tokens) + ")"
        ids = []
        for i, part in enumerate(regex.split(pattern, text)):
            if i % 2:
                ids.append(special_tokens[part])
            else:
                ids.extend(encode(part, merges))
        return ids
''')

_wrong(EX5, "special_strips_whitespace", "strips the text around each special token", '''
    def encode_with_special(text, merges, special_tokens):
        if not special_tokens:
            return encode(text, merges)
        pattern = "(" + "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True)) + ")"
        ids = []
        for i, part in enumerate(regex.split(pattern, text)):
            if i % 2:
                ids.append(special_tokens[part])
            else:
                ids.extend(encode(part.strip(), merges))
        return ids
''')

_wrong(EX5, "special_no_empty_case",
       "forgets that special_tokens may be empty: the pattern '()' matches everywhere", '''
    def encode_with_special(text, merges, special_tokens):
        pattern = "(" + "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True)) + ")"
        ids = []
        for i, part in enumerate(regex.split(pattern, text)):
            if i % 2:
                ids.append(special_tokens[part])
            else:
                ids.extend(encode(part, merges))
        return ids
''')

_wrong(EX5, "special_first_occurrence_only",
       "str.partition per special token: only its first occurrence becomes an id", '''
    def encode_with_special(text, merges, special_tokens):
        for special in sorted(special_tokens, key=len, reverse=True):
            if special in text:
                before, _, after = text.partition(special)
                return (encode_with_special(before, merges, special_tokens) + [special_tokens[special]]
                        + encode(after, merges))
        return encode(text, merges)
''')

_wrong(EX5, "special_pattern_built_once",
       "compiles the pattern on the first call only: later calls split on the first call's special strings", '''
    _special_pattern = None


    def encode_with_special(text, merges, special_tokens):
        global _special_pattern
        if not special_tokens:
            return encode(text, merges)
        if _special_pattern is None:  # compile once, not on every call
            longest_first = sorted(special_tokens, key=len, reverse=True)
            _special_pattern = regex.compile("(" + "|".join(regex.escape(s) for s in longest_first) + ")")
        ids = []
        for i, part in enumerate(_special_pattern.split(text)):
            if i % 2:
                ids.append(special_tokens[part])
            else:
                ids.extend(encode(part, merges))
        return ids
''')

_wrong(EX5, "special_pattern_kept_by_count",
       "keeps the compiled pattern per number of special tokens: other special strings, as many, reuse it", '''
    _patterns = {}


    def encode_with_special(text, merges, special_tokens):
        if not special_tokens:
            return encode(text, merges)
        if len(special_tokens) not in _patterns:
            longest_first = sorted(special_tokens, key=len, reverse=True)
            _patterns[len(special_tokens)] = regex.compile("(" + "|".join(regex.escape(s) for s in longest_first) + ")")
        ids = []
        for i, part in enumerate(_patterns[len(special_tokens)].split(text)):
            if i % 2:
                ids.append(special_tokens[part])
            else:
                ids.extend(encode(part, merges))
        return ids
''')

# --- Exercise 6: decode_stream ----------------------------------------------------------------------------------
EX6 = "ex6_decode_stream"

_wrong(EX6, "stream_each_token_replace", "decodes each token on its own with errors='replace'", _with_vocab('''

    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        for i in ids:
            yield vocab[i].decode("utf-8", errors="replace")
'''))

_wrong(EX6, "stream_each_token_ignore",
       "decodes each token on its own with errors='ignore': split characters vanish", _with_vocab('''

    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        for i in ids:
            yield vocab[i].decode("utf-8", errors="ignore")
'''))

_wrong(EX6, "stream_no_final_flush", "never flushes: a character cut off at the end is lost", _with_vocab('''

    import codecs


    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i in ids:
            yield decoder.decode(vocab[i])
'''))

_wrong(EX6, "stream_reads_all_ids_first",
       "turns ids into a list before yielding anything, so nothing streams", _with_vocab('''

    import codecs


    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        ids = list(ids)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for k in range(len(ids)):
            yield decoder.decode(vocab[ids[k]])
        rest = decoder.decode(b"", final=True)
        if rest:
            yield rest
'''))

_wrong(EX6, "stream_holds_on_any_error",
       "holds bytes back whenever a strict decode fails, so one bad byte stalls the stream", _with_vocab('''

    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        pending = b""
        for i in ids:
            pending += vocab[i]
            try:
                text = pending.decode("utf-8")
            except UnicodeDecodeError:
                yield ""
                continue
            pending = b""
            yield text
        if pending:
            yield pending.decode("utf-8", errors="replace")
'''))

_wrong(EX6, "stream_waits_for_ascii", "shows text only once a token ends in an ASCII byte", _with_vocab('''

    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        pending = b""
        for i in ids:
            pending += vocab[i]
            if pending[-1] < 0x80:
                yield pending.decode("utf-8", errors="replace")
                pending = b""
            else:
                yield ""
        if pending:
            yield pending.decode("utf-8", errors="replace")
'''))

_wrong(EX6, "stream_checks_last_byte_only",
       "holds back only a start byte at the very end, not a started character", _with_vocab('''

    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        pending = b""
        for i in ids:
            pending += vocab[i]
            if pending[-1] >= 0xC0:
                yield pending[:-1].decode("utf-8", errors="replace")
                pending = pending[-1:]
            else:
                yield pending.decode("utf-8", errors="replace")
                pending = b""
        if pending:
            yield pending.decode("utf-8", errors="replace")
'''))

_wrong(EX6, "stream_skips_empty",
       "yields only non-empty text, so the pieces no longer line up with the tokens", _with_vocab('''

    import codecs


    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i in ids:
            text = decoder.decode(vocab[i])
            if text:
                yield text
        rest = decoder.decode(b"", final=True)
        if rest:
            yield rest
'''))

_wrong(EX6, "stream_shared_decoder",
       "one incremental decoder at module level: two streams at once mix their held-back bytes", _with_vocab('''

    import codecs

    _decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # keeps the bytes of an unfinished character


    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        for i in ids:
            yield _decoder.decode(vocab[i])
        rest = _decoder.decode(b"", final=True)
        if rest:
            yield rest
'''))

_wrong(EX6, "stream_vocab_kept_by_count",
       "builds the id -> bytes table once per number of merges: another list of as many merges reuses it", '''
    import codecs

    _vocab_by_size = {}


    def decode_stream(ids, merges):
        if len(merges) not in _vocab_by_size:
            vocab = [bytes([b]) for b in range(256)]
            for a, b in merges:
                vocab.append(vocab[a] + vocab[b])
            _vocab_by_size[len(merges)] = vocab
        vocab = _vocab_by_size[len(merges)]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i in ids:
            yield decoder.decode(vocab[i])
        rest = decoder.decode(b"", final=True)
        if rest:
            yield rest
''')


# --- Correct answers written differently: the tests must accept them -------------------------------------------

_right(EX1, "count_pairs_counter", "returns a collections.Counter", '''
    from collections import Counter


    def count_pairs(ids):
        return Counter(zip(ids, ids[1:]))
''')

_right(EX1, "count_pairs_defaultdict", "counts into a collections.defaultdict(int)", '''
    from collections import defaultdict


    def count_pairs(ids):
        counts = defaultdict(int)
        for i in range(len(ids) - 1):
            counts[ids[i], ids[i + 1]] += 1
        return counts
''')

_right(EX2, "merge_with_skip_flag", "a for loop that skips the id after a merged pair", '''
    def merge(ids, pair, new_id):
        out = []
        skip = False
        for i, x in enumerate(ids):
            if skip:
                skip = False
                continue
            if i + 1 < len(ids) and x == pair[0] and ids[i + 1] == pair[1]:
                out.append(new_id)
                skip = True
            else:
                out.append(x)
        return out
''')

_right(EX2, "merge_stack", "a stack: joins the new id onto the last kept id when the two form the pair", '''
    def merge(ids, pair, new_id):
        out = []
        for x in ids:
            if out and out[-1] == pair[0] and x == pair[1]:  # out[-1] is never a merged id: new_id is new
                out[-1] = new_id
            else:
                out.append(x)
        return out
''')

_right(EX3, "train_numpy_pair_matrix_ints", "a NumPy matrix of pair counts, argmax, and int() on the pair", '''
    import numpy as np


    def train_merges(text, vocab_size):
        chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT2_SPLIT_PATTERN, text)]
        merges = []
        for new_id in range(256, vocab_size):
            counts = np.zeros((new_id, new_id), dtype=np.int64)
            for chunk in chunks:
                for a, b in zip(chunk, chunk[1:]):
                    counts[a, b] += 1
            if counts.max() == 0:
                break
            a, b = np.unravel_index(counts.argmax(), counts.shape)
            best = (int(a), int(b))
            merges.append(best)
            chunks = [merge(chunk, best, new_id) for chunk in chunks]
        return merges
''')

_right(EX3, "train_every_chunk_sorted",
       "re-counts every chunk occurrence (no Counter of chunks) and sorts the pairs", '''
    def train_merges(text, vocab_size):
        chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT2_SPLIT_PATTERN, text)]
        merges = []
        for new_id in range(256, vocab_size):
            counts = {}
            for chunk in chunks:
                for pair, n in count_pairs(chunk).items():
                    counts[pair] = counts.get(pair, 0) + n
            if not counts:
                break
            best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]
            merges.append(best)
            chunks = [merge(chunk, best, new_id) for chunk in chunks]
        return merges
''')

_right(EX4, "encode_merges_in_order", "applies every merge once, in the order learned; decodes recursively", '''
    def encode(text, merges):
        ids = []
        for chunk in regex.findall(GPT2_SPLIT_PATTERN, text):
            tokens = list(chunk.encode("utf-8"))
            for i, pair in enumerate(merges):
                if len(tokens) < 2:
                    break
                tokens = merge(tokens, pair, 256 + i)
            ids.extend(tokens)
        return ids


    def decode(ids, merges):
        def expand(i):
            if i < 256:
                return [i]
            left, right = merges[i - 256]
            return expand(left) + expand(right)

        data = bytearray()
        for i in ids:
            data.extend(expand(i))
        return data.decode("utf-8", "replace")
''')

_right(EX4, "decode_work_list_copy", "decode expands a copy of the ids as a work list (encode: the reference)",
       _ENCODE_OK.strip() + "\n\n\n" + dedent('''
    def decode(ids, merges):
        todo = list(ids)  # a copy: the caller's list stays as it is
        data = bytearray()
        while todo:
            i = todo.pop(0)
            if i < 256:
                data.append(i)
            else:
                todo[:0] = merges[i - 256]
        return data.decode("utf-8", errors="replace")
''').strip())

_right(EX5, "special_scan_positions",
       "scans the text position by position, trying the longest special string first", '''
    def encode_with_special(text, merges, special_tokens):
        longest_first = sorted(special_tokens, key=len, reverse=True)
        ids, start, i = [], 0, 0
        while i < len(text):
            match = next((s for s in longest_first if text.startswith(s, i)), None)
            if match is None:
                i += 1
                continue
            ids += encode(text[start:i], merges) + [special_tokens[match]]
            i = start = i + len(match)
        return ids + encode(text[start:], merges)
''')

_right(EX6, "stream_by_hand",
       "holds back an incomplete last character by reading UTF-8 start bytes, no codecs", _with_vocab('''
    def decode_stream(ids, merges):
        vocab = token_bytes(merges)
        pending = b""
        for token in ids:
            pending += vocab[token]
            cut = len(pending)
            for back in range(1, min(4, len(pending)) + 1):
                byte = pending[-back]
                if byte & 0xC0 != 0x80:  # not a continuation byte: where the last character starts
                    size = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
                    if size > back:
                        cut = len(pending) - back  # that character is not complete yet
                    break
            yield pending[:cut].decode("utf-8", errors="replace")
            pending = pending[cut:]
        if pending:
            yield pending.decode("utf-8", errors="replace")
'''))

_wrong(EX5, "special_cached_by_names",
       "caches the pattern and the id table by the tuple of special strings: the same strings with other ids get "
       "the ids of the first call", '''
    _cache = {}


    def encode_with_special(text, merges, special_tokens):
        if not special_tokens:
            return encode(text, merges)
        names = tuple(special_tokens)
        if names not in _cache:  # the names decide the pattern, so they make the key
            longest_first = sorted(special_tokens, key=len, reverse=True)
            pattern = regex.compile("(" + "|".join(regex.escape(s) for s in longest_first) + ")")
            _cache[names] = (pattern, dict(special_tokens))
        pattern, ids_of = _cache[names]
        ids = []
        for i, part in enumerate(pattern.split(text)):
            if i % 2:
                ids.append(ids_of[part])
            else:
                ids.extend(encode(part, merges))
        return ids
''')
