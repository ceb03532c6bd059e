"""L-BFGS, recomputed: one ``step(closure)`` is up to ``max_iter`` iterations over one flat
vector of every parameter, each a two-loop recursion over the history of (y, s) pairs,
a step size, and (with ``line_search_fn="strong_wolfe"``) a line search.

This module runs that algorithm itself on copies of the parameters, evaluating the same
closure the engine gave torch (``core.engine``: zero_grad, the loss on this step's
batch, backward), in the order of ``torch/optim/lbfgs.py`` so the recomputation in the
parameters' dtype can match torch to the bit. The reference run keeps the direction,
the history and the iterate in float64 and evaluates the loss at the iterate rounded
to the parameters' dtype. The explained element is read from the flat vectors at its
offset (``flat_index``).
"""
from __future__ import annotations

import torch

from .explain_rules import Run


class Flat:
    """The parameters as L-BFGS sees them: one flat vector, evaluated through the closure."""

    def __init__(self, params: list[torch.Tensor], closure, dtype: torch.dtype, reference: bool):
        self.params, self.closure, self.reference = params, closure, reference
        self.dtype = dtype
        self.xs = [p.detach().to(dtype, copy=True) for p in params]
        self.evals = 0

    def moved(self, xs, t, d) -> list[torch.Tensor]:
        """x + t*d, parameter by parameter (torch: ``p.add_(d[offset:offset+n].view_as(p), alpha=t)``)."""
        out, offset = [], 0
        for x in xs:
            n = x.numel()
            out.append(x.clone().add_(d[offset:offset + n].view_as(x), alpha=t))
            offset += n
        return out

    def evaluate(self, xs) -> tuple[float, torch.Tensor]:
        """The loss and flat gradient at ``xs`` (the live parameters are set to them first)."""
        with torch.no_grad():
            for p, x in zip(self.params, xs):
                p.copy_(x)
        with torch.enable_grad():
            loss = float(self.closure().detach())
        self.evals += 1
        views = []
        for p in self.params:
            if p.grad is None:
                views.append(p.new(p.numel()).zero_())
            elif p.grad.is_sparse:
                views.append(p.grad.to_dense().view(-1))
            else:
                views.append(p.grad.view(-1))
        flat = torch.cat(views, 0)
        return loss, (flat.to(torch.float64) if self.reference else flat)


def _cubic(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through two points with their slopes, within ``bounds``."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square.sqrt()
        if x1 <= x2:
            pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(pos, lo), hi)
    return (lo + hi) / 2.0


def strong_wolfe(obj, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step size meeting the strong Wolfe conditions: bracket, then zoom (minFunc's lswolfe)."""
    d_norm = d.abs().max()
    g = g.clone()
    f_new, g_new = obj(t)
    evals, gtd_new = 1, g_new.dot(d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done, ls_iter = False, 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            br, br_f, br_g, br_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            br, br_f, br_g, br_gtd, done = [t], [f_new], [g_new], [gtd_new], True
            break
        if gtd_new >= 0:
            br, br_f, br_g, br_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        tmp = t
        t = _cubic(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.clone(), gtd_new
        f_new, g_new = obj(t)
        evals, gtd_new, ls_iter = evals + 1, g_new.dot(d), ls_iter + 1
    if ls_iter == max_ls:
        br, br_f, br_g = [0, t], [f, f_new], [g, g_new]
    insufficient = False
    low, high = (0, 1) if br_f[0] <= br_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(br[1] - br[0]) * d_norm < tolerance_change:
            break
        t = _cubic(br[0], br_f[0], br_gtd[0], br[1], br_f[1], br_gtd[1])
        eps = 0.1 * (max(br) - min(br))
        if min(max(br) - t, t - min(br)) < eps:
            if insufficient or t >= max(br) or t <= min(br):
                t = max(br) - eps if abs(t - max(br)) < abs(t - min(br)) else min(br) + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = obj(t)
        evals, gtd_new, ls_iter = evals + 1, g_new.dot(d), ls_iter + 1
        if f_new > (f + c1 * t * gtd) or f_new >= br_f[low]:
            br[high], br_f[high], br_g[high], br_gtd[high] = t, f_new, g_new.clone(), gtd_new
            low, high = (0, 1) if br_f[0] <= br_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (br[high] - br[low]) >= 0:
                br[high], br_f[high], br_g[high], br_gtd[high] = br[low], br_f[low], br_g[low], br_gtd[low]
            br[low], br_f[low], br_g[low], br_gtd[low] = t, f_new, g_new.clone(), gtd_new
    return br_f[low], br_g[low], br[low], evals


def _direction(g, d, t, hist, prev_g, history_size):
    """The two-loop recursion: -H*g from the last ``history_size`` (y, s) pairs."""
    old_dirs, old_stps, ro, h_diag = hist
    y = g.sub(prev_g)
    s = d.mul(t)
    ys = y.dot(s)
    if ys > 1e-10:
        if len(old_dirs) == history_size:
            old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
        old_dirs.append(y)
        old_stps.append(s)
        ro.append(1.0 / ys)
        h_diag = ys / y.dot(y)
    al = [None] * history_size
    q = g.neg()
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q.add_(old_dirs[i], alpha=-al[i])
    d = r = torch.mul(q, h_diag)
    for i in range(len(old_dirs)):
        be_i = old_dirs[i].dot(r) * ro[i]
        r.add_(old_stps[i], alpha=al[i] - be_i)
    return d, (old_dirs, old_stps, ro, h_diag), ys


def lbfgs(r: Run, params: list[torch.Tensor], closure, state: dict, target: int, flat_index: int) -> None:
    """One L-BFGS step from ``state`` (the optimizer's state before it), recorded in ``r``."""
    h = r.h
    lr, max_iter, max_eval = h["lr"], h["max_iter"], h["max_eval"]
    tol_grad, tol_change, history_size = h["tolerance_grad"], h["tolerance_change"], h["history_size"]
    work = torch.float64 if r.reference else None
    flat = Flat(params, closure, work or params[0].dtype, r.reference)

    def cast(v):
        if isinstance(v, torch.Tensor):
            return v.to(work, copy=True) if work is not None else v.clone()
        return [cast(x) for x in v] if isinstance(v, list) else v

    n_iter_total = state.get("n_iter", 0)
    loss, g = flat.evaluate(flat.xs)
    at = flat_index
    r.term("g (flat)", "gradient of the loss at theta_{t-1}, the element's place in the flat vector", float(g[at]))
    if g.abs().max() <= tol_grad:
        r.term("theta_t", "unchanged: max|g| <= tolerance_grad", flat.xs[target], "param")
        r.p = flat.xs[target]
        return
    d, t = cast(state.get("d")), state.get("t")
    hist = (cast(state.get("old_dirs")), cast(state.get("old_stps")), cast(state.get("ro")), cast(state.get("H_diag")))
    prev_g, prev_loss = cast(state.get("prev_flat_grad")), state.get("prev_loss")
    evals, n_iter = 1, 0
    while n_iter < max_iter:
        n_iter += 1
        n_iter_total += 1
        if n_iter_total == 1:
            d, hist = g.neg(), ([], [], [], 1)
            text = "-g  (first iteration: steepest descent)"
        else:
            d, hist, _ = _direction(g, d, t, hist, prev_g, history_size)
            text = "-H*g  (two-loop recursion over the history)"
        prev_g = g.clone() if prev_g is None else prev_g.copy_(g)
        prev_loss = loss
        t = min(1.0, 1.0 / g.abs().sum()) * lr if n_iter_total == 1 else lr
        gtd = g.dot(d)
        r.term(f"d (iter {n_iter})", text, float(d[at]))
        if gtd > -tol_change:
            r.term(f"stop (iter {n_iter})", "g.d > -tolerance_change: not a descent direction", float(gtd))
            break
        ls_evals = 0
        if h["line_search_fn"] is not None:
            x0 = flat.xs
            loss, g, t, ls_evals = strong_wolfe(lambda s: flat.evaluate(flat.moved(x0, s, d)), t, d, loss, g, gtd,
                                                max_ls=max_eval - evals)
            flat.xs = flat.moved(flat.xs, t, d)
            opt_cond = g.abs().max() <= tol_grad
        else:
            flat.xs = flat.moved(flat.xs, t, d)
            opt_cond = False
            if n_iter != max_iter:
                loss, g = flat.evaluate(flat.xs)
                opt_cond = g.abs().max() <= tol_grad
                ls_evals = 1
        evals += ls_evals
        r.term(f"t (iter {n_iter})", "step size" + (" (strong Wolfe line search)" if h["line_search_fn"] else
                                                     " (lr; the first: min(1, 1/|g|_1)*lr)"), float(t))
        r.term(f"theta (iter {n_iter})", "theta + t*d", flat.xs[target])
        if n_iter == max_iter or evals >= max_eval or opt_cond or d.mul(t).abs().max() <= tol_change \
                or abs(loss - prev_loss) < tol_change:
            break
    old_dirs, old_stps, ro, h_diag = hist
    r.term("iterations", "inner iterations this step (max_iter caps them)", n_iter)
    r.term("loss evaluations", "closure calls this step (max_eval caps them)", evals)
    r.term("history", "(y, s) pairs kept (history_size caps them)", len(old_dirs))
    r.term("H_diag", "y.s / y.y of the newest pair: the initial inverse Hessian scale", float(h_diag), "H_diag")
    r.term("d", "the last direction", float(d[at]), "d")
    r.term("t", "the last step size", float(t), "t")
    r.p = flat.xs[target]
    r.term("theta_t", "theta_{t-1} + sum of t*d over the iterations", r.p, "param")
