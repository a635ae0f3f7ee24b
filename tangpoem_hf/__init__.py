"""tangpoem: a Tang-poem generator built on a character-level LSTM, shipped the Hugging Face way."""

from .errors import CorpusError, InputError, ModelFileError, TangPoemError
from .modeling import TangPoemConfig, TangPoemLSTM, TangPoemOutput, load_model
from .numpy_lstm import NumpyLSTM
from .tokenizer import CharTokenizer

__all__ = [
    "CharTokenizer",
    "CorpusError",
    "InputError",
    "ModelFileError",
    "NumpyLSTM",
    "TangPoemConfig",
    "TangPoemError",
    "TangPoemLSTM",
    "TangPoemOutput",
    "load_model",
]
