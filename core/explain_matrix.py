"""Update rules whose step mixes the whole tensor: Adafactor (row and column factors of the
second moment) and Muon (the Newton-Schulz orthogonalised momentum of the whole matrix).

Written like ``core.explain_rules`` (same ``Run``), in the order of torch's
``_single_tensor_adafactor`` and ``_single_tensor_muon``. Whole-tensor quantities
(RMS of the parameter, the norm of the update, each Newton-Schulz iterate) are
recorded as numbers or read at the explained element.
"""
from __future__ import annotations

import math

import torch

from . import torch_issues
from .explain_rules import Run


def adafactor(r: Run) -> None:
    h = r.h
    lr, wd, d = h["lr"], h["weight_decay"], h["d"]
    eps1, eps2 = h["eps"]
    g = r.g()
    if eps1 is None:
        eps1 = torch.finfo(r.param_dtype).eps  # torch: the parameter's dtype, whatever the run's
    t = r.step()
    beta2_hat = t ** h["beta2_decay"]
    r.term("1 - beta2_hat_t", "t^beta2_decay", beta2_hat)
    rho = min(lr, 1 / (t ** 0.5))
    r.term("rho_t", "min(lr, 1/sqrt(t))", rho)
    rms_p = r.p.norm(2).item() / (r.p.numel() ** 0.5)
    r.term("RMS(theta_{t-1})", "||theta_{t-1}|| / sqrt(numel)", rms_p)
    alpha = max(eps2, rms_p) * rho
    r.term("alpha_t", "max(eps2, RMS(theta_{t-1}))*rho_t", alpha)
    if wd != 0:
        r.p = r.scale(r.p, 1 - lr * wd)
        r.term("theta (decayed)", "theta_{t-1}*(1 - lr*weight_decay)", r.p)
    if g.dim() > 1:
        row_mean = torch.norm(g, dim=-1, keepdim=True).square().div(g.size(-1))
        r.term("mean_j g^2", "mean of g_t^2 over the element's row", row_mean)
        row = r.st("row_var", torch.zeros_like(row_mean)).lerp(row_mean, beta2_hat)
        r.term("R_t", "row factor: R_{t-1} + (1 - beta2_hat)*(row mean - R_{t-1})", row, "row_var")
        col_mean = torch.norm(g, dim=-2, keepdim=True).square().div(g.size(-2))
        r.term("mean_i g^2", "mean of g_t^2 over the element's column", col_mean)
        col = r.st("col_var", torch.zeros_like(col_mean)).lerp(col_mean, beta2_hat)
        r.term("C_t", "column factor: C_{t-1} + (1 - beta2_hat)*(column mean - C_{t-1})", col, "col_var")
        var = row @ col
        row_avg = row.mean(dim=-2, keepdim=True).clamp(min=eps1)
        r.term("max(mean R_t, eps1)", "mean of the row factors, at least eps1", row_avg)
        var = var.div(row_avg)
        r.term("V_hat", "R_t[i]*C_t[j] / max(mean R_t, eps1)", var)
        r.new_state.update(row_var=row, col_var=col)
    else:
        variance = r.st("variance").lerp(g * g, beta2_hat)
        r.term("V_hat", "V_{t-1} + (1 - beta2_hat)*(g_t^2 - V_{t-1})  (a vector: no factors)", variance, "variance")
        r.new_state["variance"] = variance
        var = variance.clone()
    update = var.clamp(min=eps1 * eps1).rsqrt()
    r.term("1/max(sqrt(V_hat), eps1)", "rsqrt(max(V_hat, eps1^2))", update)
    update = update.mul(g)
    r.term("U_t", "g_t / max(sqrt(V_hat), eps1)", update)
    rms_u = update.norm(2).item() / ((update.numel() ** 0.5) * d)
    r.term("RMS(U_t)/d", "||U_t|| / (sqrt(numel)*d)", rms_u)
    denom = max(1.0, rms_u)
    if r.impl == "foreach":  # torch's foreach Adafactor scales the update first, then adds it
        r.p = r.p.add(r.scale(update, -alpha / denom))
    else:
        r.p = r.p.add(update, alpha=-alpha / denom)
    r.term("theta_t", "theta - alpha_t*U_t/max(1, RMS(U_t)/d)", r.p, "param")


def newton_schulz(r: Run, x: torch.Tensor, coefficients, steps: int, eps: float) -> torch.Tensor:
    """torch's quintic Newton-Schulz iteration (bfloat16 as torch runs it; float64 in the reference)."""
    a, b, c = coefficients
    tall = x.size(0) > x.size(1)
    o = x.to(torch.float64 if r.reference else torch.bfloat16)
    if tall:
        o = o.T
    o = o.div(o.norm().clamp(min=eps))
    r.term("X_0", "B_tilde/max(||B_tilde||_F, eps)  (" + ("float64" if r.reference else "bfloat16") + ")",
           o.T if tall else o)
    for k in range(steps):
        gram = o @ o.T
        gram_update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        o = torch.addmm(o, gram_update, o, beta=a)
        r.term(f"X_{k + 1}", "a*X + (b*A + c*A^2)*X, A = X*X^T", o.T if tall else o)
    return o.T if tall else o


def muon(r: Run) -> None:
    h = r.h
    lr, wd, mom = h["lr"], h["weight_decay"], h["momentum"]
    g = r.g()
    b0 = r.st("momentum_buffer")
    r.term("B_{t-1}", "momentum buffer before the step", b0)
    buf = b0.lerp(g, 1 - mom)
    r.term("B_t", "momentum*B_{t-1} + (1 - momentum)*g_t  (torch: lerp)", buf, "momentum_buffer")
    if h["nesterov"]:
        upd = g.lerp(buf, mom)
        r.term("B_tilde", "(1 - momentum)*g_t + momentum*B_t  (nesterov, torch: lerp)", upd)
    else:
        upd = buf
    o = newton_schulz(r, upd, h["ns_coefficients"], h["ns_steps"], h["eps"])
    r.term("O_t", "NS(B_tilde): the orthogonalised update", o)
    rows, cols = r.p.shape[:2]
    fn = h.get("adjust_lr_fn")
    if fn is None or fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
        text = "lr*sqrt(max(1, rows/cols))  (original)"
    elif fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
        text = "lr*0.2*sqrt(max(rows, cols))  (match_rms_adamw)"
    else:
        ratio, text = 1.0, "lr"
    adjusted = lr * ratio
    r.term("adjusted lr", text, adjusted)
    r.p = r.p.mul(1 - lr * wd)
    r.term("theta (decayed)", "theta_{t-1}*(1 - lr*weight_decay)", r.p)
    r.p = r.p.add(o, alpha=-adjusted)
    r.term("theta_t", "theta - adjusted_lr*O_t", r.p, "param")
    r.new_state["momentum_buffer"] = buf
    r.notes.append("torch's docstring writes B_t = momentum*B_{t-1} + g_t; its code computes "
                   "lerp(B_{t-1}, g_t, 1 - momentum) = momentum*B_{t-1} + (1 - momentum)*g_t, shown here.")
    if r.param_dtype == torch.bfloat16 and not h["nesterov"] and torch_issues.muon_aliases_bf16_buffer():
        r.notes.append("this torch's Muon normalises B_t in place for bfloat16 parameters without nesterov (its "
                       "Newton-Schulz divides the tensor it is given, and .bfloat16() of a bfloat16 buffer is the "
                       "buffer itself: pytorch/pytorch#194664), so the momentum_buffer torch keeps is B_t/||B_t||_F "
                       "and later steps start from it; B_t above is the documented algorithm's.")



RULES = {"Adafactor": adafactor, "Muon": muon}
