"""The course library of "Build a GPT-style language model from scratch".

One module per concept, following the path of the data through a language model:

- ``corpus``          the course's offline text (Python's own documentation plus seeded generated stories)
- ``word_tokenizer``  a word-level tokenizer with a vocabulary and special tokens (Chapter 1)
- ``bpe``             byte-level byte-pair encoding: training, encoding, decoding (Chapter 1)
- ``tiktoken_bridge`` the trained BPE as a real ``tiktoken.Encoding``; OpenAI's encodings when cached (Chapter 1)
- ``device``          where tensors live: CUDA, then Apple MPS, then CPU
"""

__version__ = "0.1.0"
