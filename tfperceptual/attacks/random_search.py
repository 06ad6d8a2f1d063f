"""A gradient-free attack inside the SSIM ball: :class:`SSIMSquare`, a Square-style random search.

Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020) moves a random square window of the image
at each query and keeps the move when the margin loss falls; it reads only the logits, so a model that
masks its gradients cannot hide from it.  In AutoAttack it is the member that exposes gradient masking; here
it plays that role for the SSIM ball in :func:`tfperceptual.evaluation.ssim_auto_attack`: if it fools images
that SSIM-APGD, FPGAP and PGAP could not, the gradient attacks' figures are not to be trusted (Carlini et
al. 2019, "On Evaluating Adversarial Robustness", §5: a black-box attack must not beat the white-box ones).

The proposal at query q: a square of side s = ⌈√(p_q · H · W)⌉ at a uniformly random position, the same
random sign in every pixel of a colour channel, of magnitude r/s per pixel (so the window's change has norm
r, the channel's SSIM-ball radius), added to the current point and projected exactly onto the SSIM ball ∩
box (:func:`solvers.ssim_projection.project_ssim_ball`).  p_q follows Square's schedule (p_init halved at
10, 50, 200, 500, 1,000, 2,000, 4,000, 6,000 and 8,000 of 10,000 queries, rescaled to ``queries``).  Loss:
the margin Z_y − max_{j≠y} Z_j (untargeted) or max_{j≠t} Z_j − Z_t (targeted); an image stops at its first
success.  Graph-pure and stateless: every draw of an image comes from its own key (a hash of its pixels and
label, ``seed``, ``perturb``'s ``step`` and the query: :func:`~tfperceptual.attacks.apgd.image_keys`), so an
image's search does not depend on the rest of its batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..models.logits import class_margin
from ..validation import check_positive_int, check_real
from .apgd import SSIMAPGD, image_keys, mix_keys
from .registry import register_attack

__all__ = ["SSIMSquare", "square_fraction"]

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init, query, queries):
    """Square's p at ``query`` of ``queries`` (Andriushchenko et al.'s ``p_selection``, tensors or floats)."""
    it = tf.cast(tf.cast(query, tf.float32) / float(queries) * 10000.0, tf.int32)
    halvings = tf.add_n([tf.cast(it > t, tf.float32) for t in _SCHEDULE])
    return tf.cast(p_init, tf.float32) * tf.pow(0.5, halvings)


@register_attack("ssim_square")
class SSIMSquare(SSIMAPGD):
    """Square-style random search inside the SSIM ball ∩ box (gradient-free; see the module docstring).

    Args:
        model: any Keras 3 image classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        eps: S2 radius ε in (0, 1); eps_luminance: S1 radius in [0, 1).
        queries: model evaluations per image after the start, ≥ 1 (``steps``, the registry's name, sets it too).
        p_init: Square's initial fraction of pixels in the window, in (0, 1] (0.8).
        seed: int ≥ 0.
        per_channel, batch_size: keyword-only; as :class:`SSIMAPGD`.

    Raises:
        ValueError / TypeError: ε, ε1, queries, p_init or seed out of range.
    """

    _FIXED = SSIMAPGD._FIXED + ("queries", "p_init")

    def __init__(self, model, eps, eps_luminance=0.0, queries=1000, p_init=0.8, seed=0, *, per_channel=True,
                 batch_size=128, steps=None):
        self.queries = check_positive_int(queries if steps is None else steps, "queries")
        self.p_init = check_real(p_init, "p_init", 0.0, 1.0, high_inclusive=True)
        super().__init__(model, eps, eps_luminance, steps=1, loss="ce", seed=seed, per_channel=per_channel,
                         batch_size=batch_size)
        self._run = tf.function(self._search_impl, reduce_retracing=True)

    def _margin(self, x, labels, targets, targeted):
        logits = self.model(x, training=False)
        return class_margin(logits, targets) * -1.0 if targeted else class_margin(logits, labels)

    def _search_impl(self, x0, labels, targets, step, targeted):
        geo = self._geometry(x0)
        b = tf.shape(x0)[0]
        h, w, c = tf.shape(x0)[1], tf.shape(x0)[2], tf.shape(x0)[3]
        keys = image_keys(x0, labels, self.seed, 7, step)
        x, _ = self._start(x0, keys, geo)
        m_best = self._margin(x, labels, targets, targeted)
        radius = tf.reshape(tf.cast(geo["radius"], tf.float32), (b, -1))  # (B, C) or (B, 1)
        radius = radius[:, None, None, :]
        hh = tf.range(h)[None, :, None, None]
        ww = tf.range(w)[None, None, :, None]
        for q in tf.range(self.queries):
            kq = mix_keys(keys + mix_keys(tf.cast(q, tf.int64) + 1))  # (B,) this query's key per image
            p = square_fraction(self.p_init, q, self.queries)
            side = tf.clip_by_value(tf.cast(tf.math.ceil(tf.sqrt(p * tf.cast(h * w, tf.float32))), tf.int32), 1,
                                    tf.minimum(h, w))
            ph = tf.cast(tf.math.floormod(mix_keys(kq + 1), tf.cast(h - side + 1, tf.int64)), tf.int32)
            pw = tf.cast(tf.math.floormod(mix_keys(kq + 2), tf.cast(w - side + 1, tf.int64)), tf.int32)
            chans = tf.range(3, 3 + tf.cast(c, tf.int64), dtype=tf.int64)
            bit = tf.math.floormod(mix_keys(kq[:, None] + chans[None]), 2)  # (B, C) one random sign per channel
            sign = tf.cast(2 * bit - 1, tf.float32)[:, None, None, :]
            inside = ((hh >= ph[:, None, None, None]) & (hh < (ph + side)[:, None, None, None]) &
                      (ww >= pw[:, None, None, None]) & (ww < (pw + side)[:, None, None, None]))
            delta = tf.cast(inside, tf.float32) * sign * radius / tf.cast(side, tf.float32)
            cand, _ = self._project(x + delta, x0, geo)
            cand = tf.ensure_shape(cand, x0.shape)
            m = self._margin(cand, labels, targets, targeted)
            improve = (m < m_best) & (m_best >= 0.0)
            x = tf.where(improve[:, None, None, None], cand, x)
            m_best = tf.where(improve, m, m_best)
        return x, m_best

    def perturb(self, x, labels, target=None, *, step=None):
        """Adversarial images, as a tensor (the point of lowest margin found; in the ball and the box). See
        :meth:`tfperceptual.attacks.base.Attack.perturb`."""
        x = tf.cast(x, tf.float32)
        labels = tf.cast(labels, tf.int64)
        tgt = labels if target is None else tf.cast(target, tf.int64)
        step = tf.zeros((), tf.int64) if step is None else tf.cast(step, tf.int64)
        return self._run(x, labels, tgt, step, target is not None)[0]

    def _attack_batch(self, x, labels, target, return_iterates):
        adv = self.perturb(tf.constant(x), tf.constant(labels, tf.int64),
                           None if target is None else tf.constant(target, tf.int64))
        pred = self.model.predicted_class(adv).numpy()
        adv = adv.numpy()
        n = len(x)
        return {"adversarial": adv, "success": (pred == target) if target is not None else (pred != labels),
                "steps": np.full(n, self.queries, np.int32), "adv_labels": pred, "failed": np.zeros(n, bool),
                "messages": [""] * n, "iterates": adv[None] if return_iterates else None}
