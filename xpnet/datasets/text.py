"""Text for language models: a corpus as integer ids, and the :class:`Vocabulary` that maps ids to characters.

As nanoGPT's ``data/shakespeare_char/prepare.py``: the vocabulary is the text's distinct characters,
sorted (65 for tiny shakespeare), and the first 90 % of the characters train, the last 10 % validate.
The ids are ``uint16`` on the host (two bytes a character, as nanoGPT's ``train.bin``);
:class:`xpnet.TextWindows` sends them to the model's device as int64 once per ``fit``.
"""

from __future__ import annotations

import numpy as np

from ..backend import is_array, to_numpy
from .files import DatasetCorruptError, find_files

TEXTS = ("shakespeare",)
"""The corpora :func:`load_text` knows (their files and SHA-256 sums are in :data:`~xpnet.datasets.SHA256`)."""

_FILES = {"shakespeare": "input.txt"}


class Vocabulary:
    """Characters to integer ids and back: id ``i`` is ``chars[i]``.

    :meth:`from_text` builds nanoGPT's vocabulary (the text's distinct characters, sorted). :meth:`get_config`
    is JSON, so it goes into a saved model's metadata, and :meth:`from_config` rebuilds it there::

        >>> vocab = Vocabulary.from_text("hello")
        >>> vocab.chars, vocab.size
        ('ehlo', 4)
        >>> vocab.encode("hole").tolist(), vocab.decode([1, 0, 2, 2, 3])
        ([1, 3, 2, 0], 'hello')
        >>> model.metadata["vocabulary"] = vocab.get_config()   # saved with the model
        >>> Vocabulary.from_config(xpnet.load(path).metadata["vocabulary"]) == vocab
        True
    """

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"Vocabulary: chars must be a non-empty str (id i is chars[i]), got {chars!r}")
        if len(set(chars)) != len(chars):
            twice = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"Vocabulary: chars holds {twice!r} more than once; each character needs one id "
                             f"(Vocabulary.from_text(text) makes the sorted distinct characters)")
        self.chars = chars
        self._codes = np.frombuffer(chars.encode("utf-32-le"), dtype="<u4")
        self._table = np.full(int(self._codes.max()) + 1, -1, dtype=np.int64)
        self._table[self._codes] = np.arange(len(chars))
        self.dtype = np.dtype(np.uint16 if len(chars) <= 1 << 16 else np.int32)

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        """The distinct characters of ``text``, sorted (nanoGPT's ``sorted(list(set(data)))``)."""
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        """How many ids there are: the model's ``vocab_size``."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``text`` as a 1-D array of ids (:attr:`dtype`: ``uint16`` up to 65,536 characters); a character the
        vocabulary lacks is a ``ValueError`` naming it and where it is."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        ids = self._table[np.minimum(codes, self._table.size - 1)]
        unknown = np.flatnonzero((ids < 0) | (codes >= self._table.size))
        if unknown.size:
            at = int(unknown[0])
            raise ValueError(f"Vocabulary.encode: {text[at]!r} (U+{ord(text[at]):04X}, position {at}) is not one of "
                             f"the {self.size} characters of the vocabulary ({unknown.size} such position(s)); "
                             f"use only characters of vocab.chars")
        return ids.astype(self.dtype)

    def decode(self, ids) -> str:
        """The text of 1-D ``ids`` (a list, a NumPy array or an array of any backend: it is read back once)."""
        host = to_numpy(ids) if is_array(ids) else np.asarray(ids)
        if host.ndim == 0:
            host = host.reshape(1)
        if host.ndim != 1 or (host.size and host.dtype.kind not in "iu"):
            raise ValueError(f"Vocabulary.decode: ids must be one sequence of integers (1-D), got shape "
                             f"{host.shape} of {host.dtype}; for a batch decode each row: "
                             f"[vocab.decode(row) for row in ids]")
        bad = np.flatnonzero((host < 0) | (host >= self.size))
        if bad.size:
            raise ValueError(f"Vocabulary.decode: id {int(host[bad[0]])} at position {int(bad[0])} is outside "
                             f"0..{self.size - 1} (the vocabulary has {self.size} characters)")
        return self._codes[host.astype(np.int64)].tobytes().decode("utf-32-le")

    def get_config(self) -> dict:
        """``{"chars": ...}``: JSON, for ``model.metadata`` (``xpnet generate`` decodes with it)."""
        return {"chars": self.chars}

    @classmethod
    def from_config(cls, config: dict) -> "Vocabulary":
        if not isinstance(config, dict) or not isinstance(config.get("chars"), str):
            raise ValueError(f"Vocabulary.from_config: expected {{'chars': str}} (what get_config gives), got "
                             f"{config!r}")
        return cls(config["chars"])

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and other.chars == self.chars

    def __hash__(self):
        return hash(self.chars)

    def __repr__(self):
        shown = self.chars if len(self.chars) <= 40 else self.chars[:37] + "..."
        return f"Vocabulary({self.size} characters: {shown!r})"


def load_text(name: str = "shakespeare", *, data_dir=None, download: bool = True, fetch=None):
    """A corpus of :data:`TEXTS` as ``(train_ids, val_ids, vocabulary)``, character-level, as nanoGPT's
    ``shakespeare_char``: the :class:`Vocabulary` of the whole text's sorted distinct characters, the first
    90 % of the characters (``int(n * 0.9)``) for training, the rest for validation, as 1-D ``uint16`` ids.

    The file is found and checked as the MNIST files are (``<dir>/shakespeare/input.txt`` in ``data_dir``,
    ``$XPNET_DATA`` or the cache, its SHA-256 verified; else downloaded to the cache, unless
    ``download=False``); ``fetch(url) -> bytes`` replaces the HTTP download.

    >>> train, val, vocab = load_text("shakespeare")
    >>> len(train), len(val), vocab.size
    (1003854, 111540, 65)
    >>> model.fit(xpnet.TextWindows(train, 64), ..., validation_data=xpnet.TextWindows(val, 64))
    """
    if name not in TEXTS:
        raise ValueError(f"load_text: unknown text {name!r}, choose one of {', '.join(TEXTS)}")
    path = find_files(name, data_dir, download, fetch, f"{name} text", [_FILES[name]])[_FILES[name]]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetCorruptError(f"{path}: not UTF-8 text ({exc})") from None
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    split = int(len(ids) * 0.9)
    return ids[:split], ids[split:], vocab
