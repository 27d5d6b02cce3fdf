"""Why did the model say "rising"? Per-record explanations of a TrendClassifier, as JSON-ready dicts.

Everything explains the model as it serves: eval mode, logit offsets and temperature applied, and the
explained quantity is the log-probability of the predicted class c, log p_c.

Per record (`explain` returns one dict each, see `explain`):
- label and probabilities, exactly those of `predict_proba`;
- text vs sales: the exact two-player Shapley split of log p_c. The value of a coalition is log p_c with the
  absent input replaced by its baseline:
      no text   the model's own learned empty-text vector (and, for cross attention, only its null token),
                i.e. what the model sees for a product without title, description and reviews;
      no sales  the same record with every observed period's units set to 0 (same history length and
                padding mask, calendar unchanged), so the LSTM channel and the summary statistics are
                those of an all-zero history.
  phi_text = 1/2 [(v(T,S) - v(S)) + (v(T) - v(0))], phi_sales likewise; phi_text + phi_sales =
  v(T,S) - v(0) exactly. Gated fusion also reports its gate: the mean over the hidden units of g in
  g * text + (1 - g) * sales, for this record.
- sales saliency: Captum IntegratedGradients of log p_c with respect to log1p(units) per period, from the
  "no sales" baseline (all zeros) to the record, with the text fixed. The model's sales features (the
  scaled-units channel and the summary statistics) are recomputed differentiably from those units
  (`sales_inputs`), so each period's value includes what it does through the statistics too (the other
  channels, mask and calendar, are not sales and stay fixed). One value per observed period, oldest first;
  positive values pushed toward c. `top_periods` lists the periods that pushed most. A period with 0 units
  equals the baseline and gets 0: the saliency says which sold units mattered, the Shapley value what the
  history as a whole (zeros included) did. The zero-share and coefficient-of-variation statistics jump at
  exactly all-zero units, which no path integral sees: the saliency sums to v(T,S) minus log p_c just after
  the baseline (`ig_delta` is the remaining integration error), not to v(T,S) - v(T). A period with 0 units
  equals the baseline and gets 0: the saliency says which sold units mattered, the Shapley value says what
  the history as a whole (zeros included) did. The zero-share statistic jumps only at the exact baseline, so
  the saliency sums to v(T,S) minus v(T) with the record's own zero share (`ig_delta` is the remaining
  integration error); Shapley's v(T) has the all-zero one.
- text tokens: Captum LayerIntegratedGradients on the encoder's word embeddings, from a baseline where
  every non-special token is [PAD], merged from word pieces to words (sum). Text work is deduplicated:
  attributions are computed once per (distinct text, predicted class) among the records of one call, for
  the mean log p_c of those records (IG is linear in the output, so that is exactly the mean of their own
  attributions; records of one product at nearby cutoffs share their text). `dedupe_text=False` gives
  every record its own.
- reviews (when the model reads them): the review whose removal changes p_c most, and that change.
- a hybrid model (model.kind=hybrid): label and probabilities are the blend's, the quantities above explain the
  neural branch's log p_c, and `boosting` adds the blend weight, each branch's probabilities and LightGBM's exact
  tree SHAP values of the boosting branch (model/explain_boosting.py); a boosting-only model has only that part.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trendnlp.data.inputs.features import period_ends
from trendnlp.data.record_files.records import read_records
from trendnlp.data.inputs.sales_stats import sales_inputs
from trendnlp.model.explain_boosting import boosting_only_explanations, boosting_parts
from trendnlp.model.predict import Predictor
from trendnlp.model.words import words_of

SALES_STEPS = 32  # IG steps over the sales history: the LSTM + head are cheap, so batch them all
TEXT_STEPS = 8  # Gauss-Legendre steps for the text: the encoder dominates the cost, 8 already converge well
TOP_WORDS, TOP_PERIODS = 8, 4
START = 1e-4  # the sales path's start for the completeness check: z * START, just after the jumps at z = 0
TEXT_CHUNK = 64  # (text, class) groups per LayerIG call, length-sorted


# ---- the explainer -------------------------------------------------------------------------------
class _Batch:
    """Tensors of one call: texts, sales as log1p(units), the text vectors and the predicted classes."""

    def __init__(self, model, recs: list[dict]):
        c = model.config
        self.model, self.recs, self.B = model, recs, len(recs)
        collator = model.make_collator(dedup=True)
        self.device = next(model.parameters()).device
        self.texts, index = collator.texts(recs) if model.text_encoder is not None else ([], [-1] * len(recs))
        self.index = torch.tensor(index, dtype=torch.long, device=self.device)
        self.collator = collator
        if model.sales_encoder is not None:
            T = c.sales.history
            units = torch.zeros(self.B, T, dtype=torch.float32)
            for i, r in enumerate(recs):
                s = np.asarray(r["sales"], dtype=np.float64)[-T:]
                units[i, T - len(s):] = torch.from_numpy(s.astype(np.float32))
            tensors = collator.sales(recs)
            self.mask = tensors["sales"][:, :, 1].to(self.device)
            self.extra = tensors["sales"][:, :, 2:].to(self.device)
            self.z = torch.log1p(units).to(self.device)

    def sales_vec(self, z: torch.Tensor, mask=None, extra=None) -> torch.Tensor:
        c, m = self.model.config, self.model
        sales, summary = sales_inputs(z, self.mask if mask is None else mask, self.extra if extra is None else extra,
                                      c.sales.scaling, c.sales.history, c.labels.K, c.labels.alpha)
        return m.sales_encoder(sales, summary)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Pooled (U, H) and token states (U, L, H) with gradients possible (forward_tokens turns them off
        for a frozen encoder)."""
        enc = self.model.text_encoder
        states = enc.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return enc.pool(states, attention_mask), states

    def text_parts(self, pooled, states, attention_mask, index: torch.Tensor):
        """Per-record text vector (n, H) and, for cross attention, tokens (n, 1 + L, H) and their mask;
        index -1 gives the no-text inputs (the model's own empty-text vector and null token)."""
        m = self.model
        vec = m.record_texts(pooled, index)
        if not m.fusion.needs_tokens:
            return vec, None, None
        return (vec, *m.record_tokens(states if pooled is not None else None, attention_mask, index))

    def tokenized(self):
        """(input_ids, attention_mask) of the distinct texts, tokenized once per batch (None without texts)."""
        if not self.texts:
            return None
        if not hasattr(self, "_tokens"):
            t = self.collator.tokenize(self.texts)
            self._tokens = t["input_ids"].to(self.device), t["attention_mask"].to(self.device)
        return self._tokens


def explain(model, records: Any, top_words: int = TOP_WORDS, top_periods: int = TOP_PERIODS,
            sales_steps: int = SALES_STEPS, text_steps: int = TEXT_STEPS, batch_size: int = 256,
            dedupe_text: bool = True) -> list[dict]:
    """One explanation per record (see the module docstring for every quantity and its baseline).

    Args:
        model: a `TrendClassifier` (put in eval mode here; LoRA merged or not).
        records: one record dict, a list of dicts, a DataFrame or a records file path (as `predict_proba`).
        top_words: words kept per record (largest |attribution|).
        top_periods: periods listed in `top_periods` (largest positive saliency).
        sales_steps, text_steps: integration steps of the sales and text Integrated Gradients; text_steps=0
            leaves the words out (`top_words` empty): the text encoder's backward passes are most of the cost.
        batch_size: records per pass.
        dedupe_text: attribute text once per (distinct text, predicted class) in a batch.
    Returns:
        a list of JSON-serialisable dicts, in input order: product_id, cutoff, label, probabilities,
        shapley {class, value, base, text, sales, text_share, coalitions}, gate (gated fusion) or None,
        sales_saliency (one per observed period, oldest first), period_ends, top_periods, top_words,
        review (or None), ig_delta {sales, text} (IG completeness errors, in log-probability).

    >>> from trendnlp.config import TrendConfig
    >>> from trendnlp.model.classifier import TrendClassifier
    >>> clf = TrendClassifier(TrendConfig.from_dict({"text": {"enabled": False}}))
    >>> e = explain(clf, {"product_id": "mug", "sales": [3, 4, 8, 12], "cutoff": "2011-11-06"})[0]
    >>> len(e["sales_saliency"]), round(e["shapley"]["sales"] + e["shapley"]["text"], 6) == round(
    ...     e["shapley"]["value"] - e["shapley"]["base"], 6)
    (4, True)
    """
    recs = read_records(records, **model.record_rules())
    if not model.has_neural:  # model.kind=boosting: LightGBM's tree SHAP only (model/explain_boosting.py)
        return boosting_only_explanations(model, recs)
    was_training = model.training
    model.eval()
    try:
        out = []
        for s in range(0, len(recs), batch_size):
            out.extend(_explain_batch(model, recs[s:s + batch_size], top_words, top_periods, sales_steps,
                                      text_steps, dedupe_text))
        return out
    finally:
        model.train(was_training)


def _explain_batch(model, recs, top_words, top_periods, sales_steps, text_steps, dedupe_text) -> list[dict]:
    b = _Batch(model, recs)
    labels = model.labels
    probs = Predictor(model)(recs).probs  # label and probabilities from the prediction core, as predict_proba
    has_sales, has_text = model.sales_encoder is not None, model.text_encoder is not None
    tok = b.tokenized() if has_text else None
    no_text_index = torch.full((b.B,), -1, dtype=torch.long, device=b.device)
    with torch.no_grad():
        pooled, states = b.encode(*tok) if tok is not None else (None, None)
        amask = tok[1] if tok is not None else None
        s_full = b.sales_vec(b.z) if has_sales else None
        s_none = b.sales_vec(torch.zeros_like(b.z)) if has_sales else None

        def logp(text_index, sales_vec):
            vec, tokens, tmask = b.text_parts(pooled, states, amask, text_index) if has_text else (None, None, None)
            return F.log_softmax(model.head(vec, sales_vec, tokens, tmask).float(), dim=-1)

        v_ts = logp(b.index, s_full)
        pred = torch.as_tensor(probs.argmax(1), dtype=torch.long, device=b.device)
        pick = lambda v: v.gather(1, pred[:, None]).squeeze(1)  # noqa: E731 (log p of the predicted class)
        v_s = pick(logp(no_text_index, s_full)) if has_text else pick(v_ts)
        v_t = pick(logp(b.index, s_none)) if has_sales else pick(v_ts)
        # a missing branch is a dummy player: v(0) is the value without the other player
        v_0 = pick(logp(no_text_index, s_none)) if has_text and has_sales else (v_t if not has_text else v_s)
        v_full = pick(v_ts)
        gate = None
        if model.fusion.method == "gated":
            vec, _, _ = b.text_parts(pooled, states, amask, b.index)
            gate = torch.sigmoid(model.fusion.gate(torch.cat([vec, s_full], dim=-1))).mean(1)
    phi_text = 0.5 * ((v_full - v_s) + (v_t - v_0)) if has_text else torch.zeros_like(v_full)
    phi_sales = 0.5 * ((v_full - v_t) + (v_s - v_0)) if has_sales else torch.zeros_like(v_full)

    sal = delta_s = None
    if has_sales:
        sal, delta_s = _sales_saliency(model, b, pooled, states, amask, pred, sales_steps)
    words, delta_t = ([[] for _ in recs], [None] * len(recs))
    if has_text and b.texts and text_steps > 0:
        words, delta_t = _text_words(model, b, s_full, pred, top_words, text_steps, dedupe_text)
    reviews = _review_effects(model, recs, pred, v_full.exp())

    out = []
    for i, r in enumerate(recs):
        n = len(r["sales"][-model.config.sales.history:])
        row_sal = sal[i, -n:].tolist() if sal is not None else []
        ends = period_ends(r.get("cutoff"), n, r.get("freq") or "W")
        order = np.argsort(row_sal)[::-1][:top_periods] if row_sal else []
        pt, ps = float(phi_text[i]), float(phi_sales[i])
        out.append({
            "product_id": r["product_id"], "cutoff": r.get("cutoff"), "label": labels[int(pred[i])],
            "probabilities": {lab: float(probs[i, j]) for j, lab in enumerate(labels)},
            "shapley": {"class": labels[int(pred[i])], "value": float(v_full[i]), "base": float(v_0[i]),
                        "text": pt, "sales": ps,
                        "text_share": text_share(pt, ps),
                        "coalitions": {"text+sales": float(v_full[i]), "text": float(v_t[i]),
                                       "sales": float(v_s[i]), "none": float(v_0[i])}},
            "gate": float(gate[i]) if gate is not None else None,
            "sales_saliency": row_sal,
            "period_ends": [d.isoformat() for d in ends] if ends else None,
            "top_periods": [{"index": int(j), "period_end": ends[j].isoformat() if ends else None,
                             "units": float(r["sales"][-n:][j]), "saliency": float(row_sal[j])}
                            for j in order if row_sal[j] > 0],
            "top_words": words[i],
            "review": reviews[i],
            "ig_delta": {"sales": float(delta_s[i]) if delta_s is not None else None,
                         "text": float(delta_t[i]) if delta_t[i] is not None else None},
        })
    if model.blend is not None:  # a hybrid: the blend weight and the booster's own tree SHAP beside the above
        for e, part in zip(out, boosting_parts(model, recs, pred.cpu().numpy())):
            e["boosting"] = part
    return out


def text_share(phi_text: float, phi_sales: float) -> float:
    """|phi_text| / (|phi_text| + |phi_sales|); 0.5 when neither input moved the prediction (two null players are
    symmetric, so the split stays defined, e.g. for a record without text and with an all-zero history).

    >>> text_share(1.0, -3.0), text_share(0.0, 0.0)
    (0.25, 0.5)
    """
    total = abs(phi_text) + abs(phi_sales)
    return abs(phi_text) / total if total > 0 else 0.5


def _sales_saliency(model, b: _Batch, pooled, states, amask, pred, steps):
    """IG over log1p(units) per period: (B, T) attributions and (B,) completeness errors."""
    from captum.attr import IntegratedGradients

    with torch.no_grad():
        vec, tokens, tmask = (b.text_parts(pooled, states, amask, b.index) if model.text_encoder is not None
                              else (None, None, None))

    def f(z, mask, extra, vec, tokens, tmask):
        return F.log_softmax(model.head(vec, b.sales_vec(z, mask, extra), tokens, tmask).float(), dim=-1)

    args = (b.mask, b.extra, vec, tokens, tmask)
    with torch.enable_grad():
        attr = IntegratedGradients(f).attribute(b.z, baselines=torch.zeros_like(b.z), target=pred,
                                                additional_forward_args=args, n_steps=steps)
    # completeness against the path's start just after the baseline: two summary statistics (zero share,
    # coefficient of variation) jump at exactly all-zero units, a step no path integral can see
    with torch.no_grad():
        gap = (f(b.z, *args) - f(b.z * START, *args)).gather(1, pred[:, None]).squeeze(1)
    return attr.detach().cpu().numpy(), (attr.sum(1) - gap).detach().cpu().numpy()


def _text_words(model, b: _Batch, s_full, pred, top_k, steps, dedupe):
    """LayerIG on the word embeddings per (text, class) group; words (merged pieces) per record."""
    idx = b.index.cpu().numpy()
    p = pred.cpu().numpy()
    groups: dict[tuple, list[int]] = {}
    for i in range(b.B):
        if idx[i] >= 0:
            groups.setdefault((int(idx[i]), int(p[i])) if dedupe else (int(idx[i]), int(p[i]), i), []).append(i)
    keys = list(groups)
    words: list[list] = [[] for _ in range(b.B)]
    deltas: list = [None] * b.B
    if not keys:
        return words, deltas
    ids_all, mask_all = b.tokenized()
    lengths = mask_all.sum(1).cpu().numpy()
    keys.sort(key=lambda k: lengths[k[0]])  # chunks of similar length: little padding
    for s in range(0, len(keys), TEXT_CHUNK):
        chunk = keys[s:s + TEXT_CHUNK]
        width = int(max(lengths[k[0]] for k in chunk))
        g_text = torch.tensor([k[0] for k in chunk], device=b.device)
        top, delta = _text_chunk(model, b, s_full, pred, ids_all[g_text, :width], mask_all[g_text, :width],
                                 [groups[k] for k in chunk], top_k, steps, [b.texts[k[0]] for k in chunk])
        for g, k in enumerate(chunk):
            for i in groups[k]:
                words[i], deltas[i] = top[g], float(delta[g])
    return words, deltas


def _text_chunk(model, b: _Batch, s_full, pred, input_ids, attention_mask, members: list[list[int]], top_k, steps,
                texts: list[str]):
    """LayerIG for G texts (G, L) at once; members[g]: the records whose mean log p_c text g explains."""
    from captum.attr import LayerIntegratedGradients

    tokz = model.tokenizer
    base_ids = input_ids.clone()
    special_ids = set(tokz.all_special_ids)
    is_special = torch.tensor([[t in special_ids for t in row] for row in input_ids.tolist()], device=b.device)
    base_ids[~is_special] = tokz.pad_token_id
    # group g -> its records; rows of the expanded batch (step s, group g) = s * G + g
    G = len(members)
    member = [(g, i) for g, recs in enumerate(members) for i in recs]
    mg = torch.tensor([g for g, _ in member], device=b.device)
    mi = torch.tensor([i for _, i in member], device=b.device)
    counts = torch.bincount(mg, minlength=G).float()

    def f(ids, mask):
        N = ids.shape[0]
        n_steps = N // G
        pooled, states = b.encode(ids, mask)
        rows = (torch.arange(n_steps, device=b.device).unsqueeze(1) * G + mg.unsqueeze(0)).reshape(-1)
        recs = mi.repeat(n_steps)
        vec, tokens, tmask = b.text_parts(pooled, states, mask, rows)
        sales_vec = s_full[recs] if s_full is not None else None
        lp = F.log_softmax(model.head(vec, sales_vec, tokens, tmask).float(), dim=-1)
        lp = lp.gather(1, pred[recs].unsqueeze(1)).squeeze(1)
        out = torch.zeros(N, device=b.device).index_add(0, rows, lp)
        return out / counts.repeat(n_steps)

    layer = model.text_encoder.model.get_input_embeddings()
    with torch.enable_grad():
        attr, delta = LayerIntegratedGradients(f, layer).attribute(
            input_ids, baselines=base_ids, additional_forward_args=(attention_mask,), n_steps=steps,
            return_convergence_delta=True)
    per_token = attr.sum(-1).detach().cpu().numpy()  # (G, L)
    tops = []
    for g in range(G):
        skip = is_special[g].cpu().numpy() | (attention_mask[g].cpu().numpy() == 0)
        merged = words_of(tokz, texts[g], input_ids[g].tolist(), per_token[g], skip, model.config.text.max_length)
        tops.append(sorted(merged, key=lambda w: -abs(w["attribution"]))[:top_k])
    return tops, delta.detach().cpu().numpy()


def _review_effects(model, recs, pred, p_full) -> list[dict | None]:
    """Per record with reviews that the model reads: the review whose removal moves p_c most."""
    c = model.config.text
    if model.text_encoder is None or not (c.include_reviews and c.max_reviews > 0):
        return [None] * len(recs)
    variants, owner = [], []
    for i, r in enumerate(recs):
        for j in range(min(len(r.get("reviews") or []), c.max_reviews)):  # later reviews are not read
            variants.append({**r, "product_id": f"{r['product_id']}#{j}",  # ids must stay unique in a call
                             "reviews": r["reviews"][:j] + r["reviews"][j + 1:]})
            owner.append((i, j))
    out: list[dict | None] = [None] * len(recs)
    if not variants:
        return out
    probs = model.predict_proba(variants)
    for (i, j), pv in zip(owner, probs):
        change = float(p_full[i]) - float(pv[int(pred[i])])  # > 0: the review supported the prediction
        if out[i] is None or abs(change) > abs(out[i]["change"]):
            out[i] = {"index": j, "text": recs[i]["reviews"][j], "p_without": float(pv[int(pred[i])]),
                      "change": change}
    return out
