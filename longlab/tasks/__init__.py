"""Tasks and data: the pydoc_data corpus, the standard-library source corpus, passkey retrieval, dictionary lookup
(all deterministic given a seed)."""
from .corpus import Document, decode, encode, load_documents, split_documents, unigram_loss
from .dictionary import DictionaryExample, dictionary_batch, make_dictionary, score_dictionary
from .passkey import PasskeyExample, make_passkey, make_passkeys, passkey_accuracy, score_passkey
from .source_corpus import held_out_long_files, load_source_documents, split_source_documents

__all__ = [
    "Document", "decode", "encode", "load_documents", "split_documents", "unigram_loss",
    "held_out_long_files", "load_source_documents", "split_source_documents",
    "DictionaryExample", "dictionary_batch", "make_dictionary", "score_dictionary",
    "PasskeyExample", "make_passkey", "make_passkeys", "passkey_accuracy", "score_passkey",
]
