"""Explain one update for the optimizers beyond torch.optim that people most compare with Adam:
Lion and schedule-free AdamW (each as lion_pytorch/schedulefree and pytorch_optimizer write
it) and Prodigy (prodigyopt's).

Written like ``core.explain_rules`` (same ``Run``): each rule follows the class's own
``step`` source of the pinned version (``core.extra_optimizers.PINNED``), term by term in
its order of operations, so a recomputation in the parameter's dtype can match it to the
last bit, and once more in float64 as a reference. What the class keeps in its parameter
groups rather than its state (schedule-free's ``k``, ``weight_sum`` and ``lr_max``;
Prodigy's ``d`` and its numerator and denominator) is compared with the group after the
step: a term's torch key ``group:NAME``. Options kept on the optimizer object instead of
its groups (lion_pytorch's ``decoupled_weight_decay``, pytorch_optimizer's ``maximize``)
are read from it (``options``).

A configuration whose rule is not written out here is refused in one sentence naming the
option (``refusal``); any other extra, in one sentence naming those explained.
"""
from __future__ import annotations

import math

import torch

from .explain_rules import Run

LION_P, LION_PO = "lion_pytorch.Lion", "pytorch_optimizer.Lion"
SF, SF_PO, PRODIGY = "schedulefree.AdamWScheduleFree", "pytorch_optimizer.ScheduleFreeAdamW", "prodigyopt.Prodigy"
EXPLAINED = (LION_P, LION_PO, SF, SF_PO, PRODIGY)
# pytorch_optimizer's variants that change Lion's rule (its step reads them from the group)
LION_VARIANTS = {"use_gc": "gradient centralisation", "adanorm": "AdaNorm's gradient rescaling",
                 "cautious": "the cautious mask"}


def not_explained(name: str) -> str:
    """The one sentence for an optimizer that has no rule here."""
    return (f"{name} cannot be explained: the formulas are torch.optim's, as torch documents them, and beyond it "
            f"only those of {', '.join(EXPLAINED[:-1])} and {EXPLAINED[-1]}")


def refusal(name: str, opt, group: dict) -> str | None:
    """Why this configuration of an explained extra is not explained (one sentence), else None."""
    if name == LION_P:
        from lion_pytorch.lion_pytorch import update_fn
        if opt.update_fn is not update_fn:
            return f"{name} cannot be explained with use_triton=True: the formula is that of its plain update_fn"
    if name == LION_PO:
        on = [k for k in LION_VARIANTS if group.get(k)]
        if on:
            return (f"{name} cannot be explained with {on[0]} on ({LION_VARIANTS[on[0]]}): only its plain rule "
                    "(sign of the interpolated momentum, weight decay, maximize) is written out")
    if isinstance(group.get("lr"), torch.Tensor):
        return f"{name} cannot be explained with a tensor lr: its rule is written out for a number"
    return None


def options(name: str, opt) -> dict:
    """What the rule needs that the class keeps on the optimizer object, not in its groups."""
    if name == LION_P:
        return {"decoupled_weight_decay": opt.decoupled_wd, "init_lr": opt._init_lr}
    if name in (LION_PO, SF_PO):
        return {"maximize": opt.maximize}
    return {}


def implementation(name: str, opt, group_index: int) -> str:
    """"foreach" where the class took its batched path for this group, else "for-loop"."""
    live = opt.param_groups[group_index]
    if name == LION_PO:
        return "foreach" if opt._can_use_foreach(live) else "for-loop"
    if name == SF_PO:
        return "foreach" if opt.can_use_foreach(live, live.get("foreach", opt.foreach)) else "for-loop"
    if name == SF:
        return "foreach" if live.get("foreach") and any(p.grad is not None for p in live["params"]) else "for-loop"
    return "for-loop"


def source(name: str, impl: str) -> str:
    """Where the rule comes from; the installed version too when it is not the one the rule was written for."""
    import importlib.metadata
    from .extra_optimizers import PINNED
    from .optimizer_names import COLLECTIONS
    module, _, cls = name.partition(".")
    installed = importlib.metadata.version(COLLECTIONS[module])
    other = "" if installed == PINNED[module] else f"; {installed} is installed, so a MISMATCH may be a change of rule"
    return (f"{name}: the rule of {cls}.step in {module} {PINNED[module]}{other}, each term computed in its "
            f"{impl} order")


# ----- Lion -----

def lion_pytorch_lion(r: Run) -> None:
    """lion_pytorch's update_fn: decay, the sign of beta1's interpolation, then beta2's momentum."""
    h = r.h
    lr, wd = h["lr"], h["weight_decay"]
    b1, b2 = h["betas"]
    g = r.g()
    if h["decoupled_weight_decay"]:
        wd = wd / h["init_lr"]
        r.term("weight_decay/lr_0", "weight_decay / the constructor's lr (decoupled_weight_decay)", wd)
    m0 = r.st("exp_avg")
    r.term("m_{t-1}", "exp_avg before the step", m0)
    r.p = r.p.mul(1.0 - lr * wd)  # lion_pytorch multiplies even when weight_decay is 0 (by 1: exact)
    if wd != 0:
        r.term("theta (decayed)", "theta_{t-1}*(1 - lr*weight_decay)", r.p)
    c = m0.clone().mul(b1).add(g, alpha=1.0 - b1)
    r.term("c_t", "beta1*m_{t-1} + (1 - beta1)*g_t", c)
    u = c.sgn()
    r.term("sign(c_t)", "sign(c_t)", u)
    r.p = r.p.add(u, alpha=-lr)
    r.term("theta_t", "theta - lr*sign(c_t)", r.p, "param")
    m = m0.mul(b2).add(g, alpha=1.0 - b2)
    r.term("m_t", "beta2*m_{t-1} + (1 - beta2)*g_t  (after the update)", m, "exp_avg")
    r.new_state["exp_avg"] = m


def pytorch_optimizer_lion(r: Run) -> None:
    """pytorch_optimizer's Lion (per-parameter and foreach paths run the same operations)."""
    h = r.h
    lr, wd = h["lr"], h["weight_decay"]
    b1, b2 = h["betas"]
    g = r.g()
    if wd != 0:
        if h["weight_decouple"]:
            r.p = r.p.mul(1.0 - wd * (1.0 if h["fixed_decay"] else lr))
            r.term("theta (decayed)", "theta_{t-1}*(1 - weight_decay" + ("" if h["fixed_decay"] else "*lr")
                   + ")  (decoupled" + (", fixed_decay)" if h["fixed_decay"] else ")"), r.p)
        else:
            g = g.add(r.p, alpha=wd)
            r.term("g_t (L2)", "g_t + weight_decay*theta_{t-1}  (weight_decouple=False)", g)
    m0 = r.st("exp_avg")
    r.term("m_{t-1}", "exp_avg before the step", m0)
    c = m0.lerp(g, 1.0 - b1)
    r.term("c_t", "beta1*m_{t-1} + (1 - beta1)*g_t  (lerp)", c)
    u = c.sign()
    r.term("sign(c_t)", "sign(c_t)", u)
    m = m0.lerp(g, 1.0 - b2)
    r.term("m_t", "beta2*m_{t-1} + (1 - beta2)*g_t  (lerp)", m, "exp_avg")
    r.p = r.p.add(u, alpha=-lr)
    r.term("theta_t", "theta - lr*sign(c_t)", r.p, "param")
    r.new_state["exp_avg"] = m
    if h["maximize"]:
        r.notes.append("maximize negates the gradient in place: after the step, .grad holds -grad.")


# ----- schedule-free AdamW -----

def _group_term(r: Run, name: str, formula: str, value: float, key: str | None = None) -> None:
    r.term(name, formula, value, None if key is None else f"group:{key}")


def _averaging(r: Run, t: int, lr: float, c_text: str = "weight_t / weight_sum  (the averaging weight)",
               sched_key: str | None = None) -> tuple[float, float]:
    """The weighting both schedule-free AdamWs share: lr_max, weight_t, weight_sum, then c."""
    h = r.h
    _group_term(r, "lr_t", "lr*warmup", lr, sched_key)
    lr_max = max(lr, h["lr_max"])
    _group_term(r, "lr_max", "max(lr_t, lr_max before)", lr_max, "lr_max")
    weight = (t ** h["r"]) * (lr_max ** h["weight_lr_power"])
    _group_term(r, "weight_t", "t^r * lr_max^weight_lr_power", weight)
    weight_sum = h["weight_sum"] + weight
    _group_term(r, "weight_sum", "weight_sum before + weight_t", weight_sum, "weight_sum")
    c = weight / weight_sum if weight_sum != 0 else 0
    _group_term(r, "c_{t+1}", c_text, c)
    return lr, c


def _schedule_free_step(r: Run, g, v, denom, lr: float, c: float) -> None:
    """y, z and x of one schedule-free step, from the normalised gradient g/denom."""
    h, b1 = r.h, r.h["betas"][0]
    y0 = r.p
    z0 = r.state.get("z", y0.clone())
    r.term("y_{t-1}", "the parameter in train mode (y)", y0)
    r.term("z_{t-1}", "state['z'] before the step (starts at theta_0)", z0)
    r.term("x_{t-1}", "y + (1 - 1/beta1)*(z - y): what eval() puts in the parameter", y0.lerp(z0, 1 - 1 / b1))
    gn = g.div(denom)
    r.term("g_hat", "g_t/denom", gn)
    if h["weight_decay"] != 0:
        gn = gn.add(y0, alpha=h["weight_decay"])
        r.term("g_hat (decay)", "g_hat + weight_decay*y_{t-1}  (at y, not x)", gn)
    y = y0.lerp(z0, c)
    r.term("y (averaged)", "(1 - c)*y_{t-1} + c*z_{t-1}", y)
    r.p = y.add(gn, alpha=lr * (b1 * (1 - c) - 1))
    r.term("theta_t = y_t", "y + lr_t*(beta1*(1 - c) - 1)*g_hat", r.p, "param")
    z = z0.sub(gn, alpha=lr)
    r.term("z_t", "z_{t-1} - lr_t*g_hat", z, "z")
    r.term("x_t", "y_t + (1 - 1/beta1)*(z_t - y_t): the averaged weights eval() shows", r.p.lerp(z, 1 - 1 / b1))
    r.new_state.update(z=z, exp_avg_sq=v)
    r.notes.append("In train mode the parameter holds y_t = (1 - beta1)*z_t + beta1*x_t, the point the gradient "
                   "is taken at; eval() moves it to the average x_t, train() back.")


def adamw_schedule_free(r: Run) -> None:
    """schedulefree.AdamWScheduleFree: y (what the parameter holds in train mode), z (the SGD-like
    sequence, state['z']) and x (the average, what eval() puts in the parameter)."""
    h = r.h
    k, b2, warm = h["k"], h["betas"][1], h["warmup_steps"]
    sched = (k + 1) / warm if k < warm else 1.0
    _group_term(r, "t", "k + 1 (group['k'] before the step, plus 1)", k + 1, "k")
    _group_term(r, "warmup", "t/warmup_steps while k < warmup_steps, else 1", sched)
    bc2 = 1 - b2 ** (k + 1)
    _group_term(r, "bias_correction2", "1 - beta2^t", bc2)
    lr, c = _averaging(r, k + 1, h["lr"] * sched, sched_key="scheduled_lr")
    g = r.g()
    v = r.st("exp_avg_sq").mul(b2).addcmul(g, g, value=1 - b2)
    r.term("v_t", "beta2*v_{t-1} + (1 - beta2)*g_t^2", v, "exp_avg_sq")
    denom = v.div(bc2).sqrt().add(h["eps"])
    r.term("denom", "sqrt(v_t/bias_correction2) + eps", denom)
    _schedule_free_step(r, g, v, denom, lr, c)


def pytorch_optimizer_schedule_free(r: Run) -> None:
    """pytorch_optimizer.ScheduleFreeAdamW: schedulefree's rule with 1e-15 under the root of the
    denominator, decoupling_c (a scaled averaging weight) and ams_bound."""
    h = r.h
    (b1, b2), warm = h["betas"], h["warmup_steps"]
    t = h.get("step", 0) + 1
    _group_term(r, "t", "group['step'] + 1", t, "step")
    sched = t / warm if t < warm else 1.0
    _group_term(r, "warmup", "t/warmup_steps while t < warmup_steps, else 1", sched)
    bc2 = 1.0 - math.pow(b2, t)
    _group_term(r, "bias_correction2", "1 - beta2^t", bc2)
    lr, c = _averaging(r, t, h["lr"] * sched, "weight_t / weight_sum" if h["decoupling_c"] <= 0 else
                       "weight_t / weight_sum, before decoupling_c")
    if h["decoupling_c"] > 0:
        c = min(1.0, c * (1.0 - b1) * h["decoupling_c"])
        _group_term(r, "c (decoupling_c)", "min(1, c*(1 - beta1)*decoupling_c)", c)
    g = r.g()
    v = r.st("exp_avg_sq").mul(b2).addcmul(g, g, value=1.0 - b2)
    r.term("v_t", "beta2*v_{t-1} + (1 - beta2)*g_t^2", v, "exp_avg_sq")
    v_hat = v.div(bc2)
    r.term("v_hat", "v_t/bias_correction2", v_hat)
    if h["ams_bound"]:
        v_hat = torch.maximum(r.st("max_exp_avg_sq"), v_hat)
        r.term("v_max", "max(v_max_{t-1}, v_hat)  (ams_bound: the corrected moment is kept)", v_hat, "max_exp_avg_sq")
        r.new_state["max_exp_avg_sq"] = v_hat
    denom = v_hat.add(1e-15).sqrt().add(h["eps"])
    r.term("denom", "sqrt(v_hat + 1e-15) + eps", denom)
    _schedule_free_step(r, g, v, denom, lr, c)


# ----- Prodigy -----

def _flat(r: Run) -> int:
    shape = r.p.shape
    return sum(i * math.prod(shape[k + 1:]) for k, i in enumerate(r.index))


def _prodigy_pass(r: Run, d: float, dlr: float, beta3: float):
    """Prodigy's first loop over every parameter of every group: the moments, s, and the sums
    of the d estimate. Returns (delta_numerator, d_denom, this element's tensors)."""
    before, b1, b2 = r.context, *r.context["groups"][0]["betas"]
    delta, d_denom, mine, j = 0.0, 0.0, None, 0
    for group, size in zip(before["groups"], r.layout):
        d0, slice_p = group["d0"], group["slice_p"]
        for pos in range(j, j + size):
            if before["grads"][pos] is None:
                continue
            own = pos == r.pos
            dt = r.dtype if own or r.reference else before["params"][pos].dtype
            p = r.p if own else before["params"][pos].to(dt)
            grad = before["grads"][pos].to(dt)
            if group["weight_decay"] != 0 and not r.context["groups"][0]["decouple"]:
                grad = grad.add(p, alpha=group["weight_decay"])
            st = before["state"][pos]
            if "step" in st:
                s0, p0 = st["s"].to(dt), st["p0"].to(dt)
                m0 = st["exp_avg"].to(dt) if b1 > 0 else None
                v0 = st["exp_avg_sq"].to(dt)
            else:
                s0 = torch.zeros_like(p.flatten()[::slice_p])
                p0 = p.flatten()[::slice_p].clone() if p.any() else torch.tensor(0, dtype=dt)
                m0, v0 = (torch.zeros_like(p) if b1 > 0 else None), torch.zeros_like(p)
            m, v, s = m0, v0, s0
            if group["lr"] > 0.0:
                sliced = grad.flatten()[::slice_p]
                delta += (d / d0) * dlr * torch.dot(sliced, p0 - p.flatten()[::slice_p]).item()
                if b1 > 0:
                    m = m0.mul(b1).add(grad, alpha=d * (1 - b1))
                v = v0.mul(b2).addcmul(grad, grad, value=d * d * (1 - b2))
                s = s0.mul(beta3).add(sliced, alpha=(d / d0) * (d if group["safeguard_warmup"] else dlr))
                d_denom += s.abs().sum().item()
            if own:
                mine = dict(grad=grad, m0=m0, v0=v0, s0=s0, p0=p0, m=m, v=v, s=s, slice_p=slice_p, d0=d0)
        j += size
    return delta, d_denom, mine


def prodigy(r: Run) -> None:
    """prodigyopt.Prodigy: Adam with the learning rate scaled by d, a whole-model estimate of the
    distance to the solution that the step updates first (in every group at once)."""
    groups = r.context["groups"]
    g0, h = groups[0], r.h
    b1, b2 = g0["betas"]
    beta3 = g0["beta3"] if g0["beta3"] is not None else math.sqrt(b2)
    k, d, d_max = g0["k"], g0["d"], g0["d_max"]
    lr = max(g["lr"] for g in groups)
    bc = ((1 - b2 ** (k + 1)) ** 0.5) / (1 - b1 ** (k + 1)) if g0["use_bias_correction"] else 1
    _group_term(r, "d_{t-1}", "the d estimate before the step (group['d'])", d)
    _group_term(r, "bias_correction", "sqrt(1 - beta2^t)/(1 - beta1^t) if use_bias_correction else 1", bc)
    dlr = d * lr * bc
    _group_term(r, "dlr", "d_{t-1}*lr*bias_correction", dlr)
    delta, d_denom, e = _prodigy_pass(r, d, dlr, beta3)
    r.term("g_t", "grad" + (" + weight_decay*theta (coupled)" if h["weight_decay"] and not g0["decouple"] else ""),
           e["grad"])
    flat = _flat(r)
    if e["slice_p"] == 1:
        r.term("p0", "theta_0 (state['p0'])", e["p0"])
        r.term("s_t", "beta3*s_{t-1} + (d/d0)*dlr*g_t" + ("  (safeguard_warmup: d, not dlr)"
               if h["safeguard_warmup"] else ""), e["s"], "s")
        r.term("numerator share", "(d/d0)*dlr*g_t*(p0 - theta): this element's part of the sum",
               (d / e["d0"]) * dlr * float(e["grad"].reshape(-1)[flat]) * float(e["p0"].reshape(-1)[flat]
                                                                               - r.p.reshape(-1)[flat]))
    if b1 > 0:
        r.term("m_t", "beta1*m_{t-1} + d_{t-1}*(1 - beta1)*g_t", e["m"], "exp_avg")
    r.term("v_t", "beta2*v_{t-1} + d_{t-1}^2*(1 - beta2)*g_t^2", e["v"], "exp_avg_sq")
    r.new_state.update(exp_avg_sq=e["v"], s=e["s"])
    if d_denom == 0:
        r.notes.append("The sum of |s| is 0 (every gradient so far was 0): Prodigy returns before d and the "
                       "parameters.")
        return
    numerator = g0["d_numerator"] * beta3 + delta
    _group_term(r, "d_numerator", "beta3*d_numerator_{t-1} + sum over all elements of (d/d0)*dlr*g*(p0 - theta)",
                numerator, "d_numerator")
    _group_term(r, "d_denom", "sum over all elements of |s_t|", d_denom, "d_denom")
    d_hat = g0["d_coef"] * numerator / d_denom
    _group_term(r, "d_hat", "d_coef*d_numerator/d_denom", d_hat, "d_hat")
    if d == groups[-1]["d0"]:  # prodigyopt compares with the last group's d0 (its loop variable)
        d = max(d, d_hat)
    d_max = max(d_max, d_hat)
    _group_term(r, "d_max", "max(d_max_{t-1}, d_hat)", d_max, "d_max")
    d = min(d_max, d * g0["growth_rate"])
    _group_term(r, "d_t", "min(d_max, d*growth_rate)  (d_{t-1} raised to d_hat while it is still d0)", d, "d")
    denom = e["v"].sqrt().add(d * h["eps"])
    r.term("denom", "sqrt(v_t) + d_t*eps  (the new d)", denom)
    if h["weight_decay"] != 0 and g0["decouple"]:
        r.p = r.p.add(r.p, alpha=-h["weight_decay"] * dlr)
        r.term("theta (decayed)", "theta_{t-1} - weight_decay*dlr*theta_{t-1}  (decoupled)", r.p)
    if b1 > 0:
        r.p = r.p.addcdiv(e["m"], denom, value=-dlr)
        r.term("theta_t", "theta - dlr*m_t/denom", r.p, "param")
    else:
        r.p = r.p.addcdiv(e["grad"], denom, value=-dlr * d)
        r.term("theta_t", "theta - dlr*d_t*g_t/denom  (beta1 = 0)", r.p, "param")
    r.notes.append("d is one number for the whole model: its numerator and denominator sum over every element "
                   "of every tensor; the moments take d_{t-1}, the denominator d_t.")


RULES = {LION_P: lion_pytorch_lion, LION_PO: pytorch_optimizer_lion, SF: adamw_schedule_free,
         SF_PO: pytorch_optimizer_schedule_free, PRODIGY: prodigy}
