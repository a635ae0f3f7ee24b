"""tangpoem: a Tang-poem generator built on a character-level LSTM, shipped the Hugging Face way."""

from .decoding import Poem, generate_poem, generate_poems, stream_poem
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
    "Poem",
    "TangPoemConfig",
    "TangPoemError",
    "TangPoemLSTM",
    "TangPoemOutput",
    "generate_poem",
    "generate_poems",
    "load_model",
    "stream_poem",
]
