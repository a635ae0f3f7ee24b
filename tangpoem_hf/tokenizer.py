"""Character tokenizer whose ids are fixed by ``vocab.json``, never rebuilt on load.

Ids are assigned by descending corpus frequency (ties by code point), so the table is the same on
every machine and frequent characters get small ids, which an adaptive softmax can exploit.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError, ModelFileError
from .text import LINE_PUNCT, is_han, to_simplified

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
VOCAB_NAME = "vocab.json"
_FORMAT_VERSION = 1


class CharTokenizer:
    """Maps characters to ids and back; input in traditional script is converted first."""

    def __init__(self, tokens: list[str], simplified: bool = True) -> None:
        if list(tokens[: len(SPECIALS)]) != list(SPECIALS):
            raise ModelFileError(f"{VOCAB_NAME} must start with the special tokens {list(SPECIALS)}.")
        if len(set(tokens)) != len(tokens):
            raise ModelFileError(f"{VOCAB_NAME} lists a token twice.")
        self.tokens = list(tokens)
        self.simplified = simplified
        self.index = {tok: i for i, tok in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.index[s] for s in SPECIALS)
        self._han_ids: list[int] | None = None

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1, simplified: bool = True) -> CharTokenizer:
        """Count characters in ``texts``; keep those seen at least ``min_freq`` times."""
        counts = Counter(ch for text in texts for ch in text)
        kept = [ch for ch, n in counts.items() if n >= min_freq and ch not in SPECIALS]
        kept.sort(key=lambda ch: (-counts[ch], ord(ch)))
        return cls(list(SPECIALS) + kept, simplified=simplified)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    def normalize(self, text: str) -> str:
        """Bring user text into the vocabulary's script."""
        return to_simplified(text) if self.simplified else text

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Ids for ``text``; characters outside the vocabulary become ``<unk>``."""
        ids = [self.index.get(ch, self.unk_id) for ch in self.normalize(text)]
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        out = []
        for i in ids:
            tok = self.tokens[int(i)]
            if skip_special and len(tok) > 1:  # <bos>, <eos>, … and the control tokens (<form:七绝>, <kw>, …)
                continue
            out.append(tok)
        return "".join(out)

    def ids_of(self, text: str) -> list[int]:
        """Ids of characters a user asked for; unknown ones are an error naming them."""
        text = self.normalize(text)
        missing = sorted({ch for ch in text if ch not in self.index})
        if missing:
            raise InputError(f"The model does not know the character(s) {''.join(missing)}.")
        return [self.index[ch] for ch in text]

    def han_ids(self) -> list[int]:
        """Ids of every Han character: the only tokens a poem's character slot may hold."""
        if self._han_ids is None:  # computed once: the decoder asks for it on every poem
            self._han_ids = [i for i, tok in enumerate(self.tokens) if is_han(tok)]
        return self._han_ids

    def punct_ids(self) -> dict[str, int]:
        return {p: self.index[p] for p in LINE_PUNCT if p in self.index}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / VOCAB_NAME
        payload = {"version": _FORMAT_VERSION, "simplified": self.simplified, "tokens": self.tokens}
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=0), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_NAME
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            tokens, simplified = payload["tokens"], bool(payload.get("simplified", True))
        except FileNotFoundError:
            raise ModelFileError(f"{path} is missing.") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{path} is not a valid vocabulary file ({exc}).") from None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ModelFileError(f"{path} must hold a list of string tokens.")
        return cls(tokens, simplified=simplified)
