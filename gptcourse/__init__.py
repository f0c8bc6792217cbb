"""The course library of "Build a GPT-style language model from scratch".

One module per concept, following the path of the data through a language model:

- ``corpus``          the course's offline text (Python's own documentation plus seeded generated stories)
- ``word_tokenizer``  a word-level tokenizer with a vocabulary and special tokens (Chapter 1)
- ``bpe``             byte-level byte-pair encoding: training, encoding, decoding (Chapter 1)
- ``tiktoken_bridge`` the trained BPE as a real ``tiktoken.Encoding``; OpenAI's encodings when cached (Chapter 1)
- ``course_tokenizer`` the course's own 2,048-token BPE tokenizer, trained by a command and used by later chapters
- ``data``            next-token training pairs: sliding windows over token ids, Dataset and DataLoader (Chapter 2)
- ``embeddings``      token embeddings, learned and sinusoidal position encodings (Chapter 2)
- ``attention``       scaled dot-product attention, causal and padding masks, multi-head attention (Chapter 3)
- ``model``           the GPT: LayerNorm/RMSNorm, GELU/SwiGLU, blocks, the model, parameter counts (Chapter 4)
- ``gpt2_weights``    loading published GPT-2 weights (Hugging Face layout) into the course model, offline (Chapter 4)
- ``families``        encoder-only (BERT-style) and encoder-decoder models, MLM masking, a toy reversal task (Chapter 4)
- ``loss``            next-token cross-entropy from logits, perplexity, evaluation on held-out data (Chapter 5)
- ``optim``           AdamW written out, the warm-up + cosine schedule, clipping by the global norm (Chapter 5)
- ``checkpoint``      save and resume a training run bit for bit: one safetensors file, never pickle (Chapter 5)
- ``train``           the pretraining loop: random windows, accumulation, clipping, schedule, evaluation, resume (Ch. 5)
- ``pretrain``        the course model: trained once per recipe and cached outside git (Chapter 5; used by 6 and 7)
- ``device``          where tensors live: CUDA, then Apple MPS, then CPU
- ``seed``            seeding Python, NumPy and PyTorch in one place
- ``tolerances``      how close two results must be, per dtype and device, for tests and exercises
"""

__version__ = "0.1.0"
