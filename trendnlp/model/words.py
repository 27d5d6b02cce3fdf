"""Token attributions -> word attributions, for explanations of any BERT-family tokenizer.

The fast tokenizer's `word_ids()` and character offsets say which tokens form a word and how it is spelled
(WordPiece, BPE and SentencePiece alike); a slow tokenizer falls back to joining WordPiece "##" pieces.
"""
from __future__ import annotations

import numpy as np

__all__ = ["merge_word_pieces", "words_of"]


def words_of(tokz, text: str, ids: list[int], values: np.ndarray, skip: np.ndarray, max_length: int) -> list[dict]:
    """Token attributions summed per word of `text`: the fast tokenizer's `word_ids()` say which tokens form a
    word and their character offsets give its spelling, so any BERT-family tokenizer (WordPiece, BPE,
    SentencePiece) merges correctly; a slow tokenizer falls back to joining WordPiece "##" pieces."""
    if getattr(tokz, "is_fast", False):
        enc = tokz(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        if enc["input_ids"] == ids[:len(enc["input_ids"])]:  # the same tokens the attributions belong to
            spans: dict[int, list] = {}
            for pos, (w, (a, e)) in enumerate(zip(enc.word_ids(), enc["offset_mapping"])):
                if w is None or skip[pos]:
                    continue
                span = spans.setdefault(w, [a, e, 0.0])
                span[0], span[1], span[2] = min(span[0], a), max(span[1], e), span[2] + float(values[pos])
            lower = getattr(tokz, "do_lower_case", False)  # an uncased model's words, as it reads them
            return [{"word": text[a:e].lower() if lower else text[a:e], "attribution": round(v, 6)}
                    for a, e, v in spans.values()]
    return merge_word_pieces(tokz.convert_ids_to_tokens(ids), values, skip)


def merge_word_pieces(tokens: list[str], values: np.ndarray, skip: np.ndarray) -> list[dict]:
    """Word pieces ("##ing") joined to the previous piece, attributions summed; special/padding tokens dropped.

    >>> merge_word_pieces(["[CLS]", "glow", "##ing", "mug", "[SEP]"], np.array([0.0, 0.2, 0.1, -0.3, 0.0]),
    ...              np.array([True, False, False, False, True]))
    [{'word': 'glowing', 'attribution': 0.3}, {'word': 'mug', 'attribution': -0.3}]
    """
    out: list[dict] = []
    for t, v, s in zip(tokens, values, skip):
        if s:
            continue
        if t.startswith("##") and out:
            out[-1]["word"] += t[2:]
            out[-1]["attribution"] = round(out[-1]["attribution"] + float(v), 6)
        else:
            out.append({"word": t, "attribution": round(float(v), 6)})
    return out
