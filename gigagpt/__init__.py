"""gigagpt: a small GPT-2 training core after Cerebras' gigaGPT."""
__version__ = "0.1.0"
