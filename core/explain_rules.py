"""The update rules of torch.optim's optimizers, written out term by term.

Each rule recomputes one optimizer step for one parameter tensor from the state
before it, independently of torch's optimizer code: it follows the algorithm in the
class's docstring, with each term computed in the order torch's for-loop
implementation computes it (``torch/optim/<name>.py``, ``_single_tensor_<name>``), so a
recomputation in the parameter's dtype can match torch to the last bit. A rule runs
twice (``Run``): in the parameter's dtype, and in float64 as a reference.

A rule records every term with ``Run.term`` (a whole tensor, a number, or a tensor
whose element is read at the explained index) and sets ``Run.p`` to the new
parameter and ``Run.new_state`` to the state entries torch keeps, which the caller
compares with what torch really did (``core.explain``).

Adafactor and Muon, whose update mixes the whole matrix, are in
``core.explain_matrix``; LBFGS, which evaluates the loss several times per step, in
``core.explain_lbfgs``.
"""
from __future__ import annotations

import math

import torch

from . import torch_issues



def scalar_dtype() -> torch.dtype:
    """The dtype torch keeps scalar state in (``step``, ASGD's ``eta``): float32 unless the default is float64."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def bias_correction(beta: float, step: float) -> float:
    """``1 - beta**t``: Adam's (and its relatives') correction of a moving average started at 0."""
    return 1 - beta ** step


class Run:
    """One recomputation of an update in one dtype (the parameter's, or float64 as the reference)."""

    def __init__(self, dtype: torch.dtype, reference: bool, p: torch.Tensor, grad: torch.Tensor,
                 state: dict, hparams: dict, index: tuple[int, ...], impl: str = "for-loop"):
        self.dtype, self.reference, self.index, self.h = dtype, reference, index, hparams
        self.impl = impl  # "for-loop", "foreach" or "fused": a few rules order terms as each one does
        self.param_dtype = p.dtype
        self.p = p.detach().to(dtype, copy=True)
        g = grad.detach()
        self.sparse_mask = None
        if g.is_sparse:
            g = g.coalesce()
            ones = torch.ones_like(g._values(), dtype=torch.bool)
            self.sparse_mask = torch.sparse_coo_tensor(g._indices(), ones, g.shape, check_invariants=True).to_dense()
            g = g.to_dense()
        self.grad = g.to(dtype, copy=True)
        # state of the parameter's dtype is recomputed in this run's dtype; scalars (step, eta, mu) stay
        self.state = {k: (v.detach().to(dtype, copy=True) if isinstance(v, torch.Tensor) and v.dtype == p.dtype
                          and (v.dim() > 0 or v.shape == p.shape) else v) for k, v in state.items()}
        self.terms: list[tuple[str, str, float, str | None]] = []
        # set by core.explain for rules of a whole-model quantity (Prodigy's d): the copies taken before
        # the step (params, grads, state, groups), this tensor's position, its group, the groups' sizes
        self.context: dict = {}
        self.pos = self.group_index = 0
        self.layout: list[int] = []
        self.new_state: dict = {}
        self.notes: list[str] = []

    # ----- recording -----

    def term(self, name: str, formula: str, value, torch_key: str | None = None) -> None:
        """Record one term; ``torch_key`` names the state entry torch holds it in after the step."""
        self.terms.append((name, formula, self.element(value), torch_key))

    def element(self, value) -> float:
        if not isinstance(value, torch.Tensor):
            return float(value)
        if value.dim() == 0:
            return float(value)
        if value.dim() == len(self.index):
            # a factor of the tensor (Adafactor's row/column, a keepdim reduction): its size-1 dims read at 0
            return float(value[tuple(i if s > 1 else 0 for i, s in zip(self.index, value.shape))])
        if value.numel() == 1:
            return float(value.reshape(-1)[0])
        if value.dim() == 1 and value.numel() == self.p.numel():  # a flattened copy (Prodigy's s)
            return float(value[sum(i * math.prod(self.p.shape[k + 1:]) for k, i in enumerate(self.index))])
        return float("nan")

    # ----- inputs -----

    def g(self) -> torch.Tensor:
        """The gradient, negated for ``maximize`` (torch: ``grad if not maximize else -grad``)."""
        g = -self.grad if self.h.get("maximize", False) else self.grad
        self.term("g_t", "-grad (maximize)" if self.h.get("maximize", False) else "grad of the loss at theta_{t-1}", g)
        return g

    def st(self, key: str, init=None) -> torch.Tensor:
        """A state tensor before the step, or the value torch starts it at (zeros by default)."""
        v = self.state.get(key)
        if v is None:
            return torch.zeros_like(self.p) if init is None else init
        return v

    def step(self) -> float:
        """t, this step's count (torch increments its float ``step`` tensor first)."""
        s = self.state.get("step")
        if s is None:
            s = torch.tensor(0.0, dtype=scalar_dtype())
        t = float(s + 1) if isinstance(s, torch.Tensor) else float(s + 1)
        self.term("t", "step count (state['step'] + 1)", t)
        return t

    def scale(self, x: torch.Tensor, s: float) -> torch.Tensor:
        """``x*s`` where torch's foreach implementation multiplies by a number (``_foreach_mul_``): on
        the CPU it rounds the number to a float16 or bfloat16 tensor's dtype first (``Tensor.mul_``
        does not; measured on torch 2.13: 0.99 becomes 0.98828125 in bfloat16)."""
        if self.impl == "foreach" and x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu":
            s = float(torch.tensor(s, dtype=x.dtype))
        return x.mul(s)

    def l2(self, g: torch.Tensor, key: str = "weight_decay") -> torch.Tensor:
        """L2 weight decay folded into the gradient: g + lambda * theta."""
        wd = self.h.get(key, 0)
        if wd != 0:
            g = g.add(self.p, alpha=wd)
            self.term("g_t (L2)", "g_t + weight_decay*theta_{t-1}", g)
        return g


# ----- the rules (for-loop order of torch 2.x's _single_tensor_* functions) -----

def sgd(r: Run) -> None:
    h = r.h
    g = r.l2(r.g())
    mom, damp, lr = h["momentum"], h["dampening"], h["lr"]
    if mom != 0:
        buf = r.state.get("momentum_buffer")
        if buf is None:
            buf = g.clone()
            r.term("b_t", "g_t (first step: the buffer starts as the gradient)", buf, "momentum_buffer")
        else:
            r.term("b_{t-1}", "momentum buffer before the step", buf)
            buf = r.scale(buf, mom).add(g, alpha=1 - damp)
            r.term("b_t", "momentum*b_{t-1} + (1 - dampening)*g_t", buf, "momentum_buffer")
        r.new_state["momentum_buffer"] = buf
        if h["nesterov"]:
            g = g.add(buf, alpha=mom)
            r.term("update", "g_t + momentum*b_t (nesterov)", g)
        else:
            g = buf
    r.p = r.p.add(g, alpha=-lr)
    r.term("theta_t", "theta_{t-1} - lr*update", r.p, "param")
    if (r.impl == "fused" and r.param_dtype in (torch.float16, torch.bfloat16) and r.p.device.type == "cpu"
            and torch_issues.fused_sgd_skips_half()):
        r.notes.append(f"this {torch_issues.FUSED_SGD_HALF}: where torch's theta_t is theta_{{t-1}}, that is why; "
                       "the formula is the documented algorithm's.")



def adam(r: Run) -> None:
    """Adam and AdamW (AdamW is Adam with decoupled_weight_decay=True)."""
    h = r.h
    b1, b2 = h["betas"]
    lr, wd, eps = h["lr"], h["weight_decay"], h["eps"]
    g = r.g()
    t = r.step()
    if wd != 0:
        if h.get("decoupled_weight_decay", False):
            r.p = r.scale(r.p, 1 - lr * wd)
            r.term("theta (decayed)", "theta_{t-1}*(1 - lr*weight_decay)  (decoupled, AdamW)", r.p)
        else:
            g = g.add(r.p, alpha=wd)
            r.term("g_t (L2)", "g_t + weight_decay*theta_{t-1}  (L2, in the moments)", g)
    m0, v0 = r.st("exp_avg"), r.st("exp_avg_sq")
    r.term("m_{t-1}", "exp_avg before the step", m0)
    r.term("v_{t-1}", "exp_avg_sq before the step", v0)
    m = m0.lerp(g, 1 - b1)
    r.term("m_t", "beta1*m_{t-1} + (1 - beta1)*g_t", m, "exp_avg")
    v = r.scale(v0, b2).addcmul(g, g, value=1 - b2)
    r.term("v_t", "beta2*v_{t-1} + (1 - beta2)*g_t^2", v, "exp_avg_sq")
    bc1, bc2 = bias_correction(b1, t), bias_correction(b2, t)
    r.term("bias_correction1", "1 - beta1^t", bc1)
    r.term("bias_correction2", "1 - beta2^t", bc2)
    step_size = lr / bc1
    r.term("step_size", "lr / bias_correction1", step_size)
    if h["amsgrad"]:
        vmax = torch.maximum(r.st("max_exp_avg_sq"), v)
        r.term("v_max", "max(v_max_{t-1}, v_t)  (amsgrad)", vmax, "max_exp_avg_sq")
        r.new_state["max_exp_avg_sq"] = vmax
        v_used = vmax
    else:
        v_used = v
    denom = (v_used.sqrt() / bc2 ** 0.5).add(eps)
    r.term("denom", "sqrt(v_t)/sqrt(bias_correction2) + eps  (= sqrt(v_hat) + eps)", denom)
    r.p = r.p.addcdiv(m, denom, value=-step_size)
    r.term("theta_t", "theta - step_size*m_t/denom", r.p, "param")
    r.new_state.update(exp_avg=m, exp_avg_sq=v)
    r.notes.append("eps is added to sqrt(v_hat) as the docstring writes, not to sqrt(v_t) as the "
                   "paper's efficient version does (pytorch#41477).")


def adagrad(r: Run) -> None:
    h = r.h
    t = r.step()
    g = r.l2(r.g())
    clr = h["lr"] / (1 + (t - 1) * h["lr_decay"])
    r.term("clr", "lr / (1 + (t - 1)*lr_decay)", clr)
    s0 = r.st("sum")
    r.term("sum_{t-1}", "state_sum before the step", s0)
    s = s0.addcmul(g, g, value=1)
    r.term("sum_t", "sum_{t-1} + g_t^2", s, "sum")
    std = s.sqrt().add(h["eps"])
    r.term("std", "sqrt(sum_t) + eps", std)
    if r.impl == "foreach":  # torch's foreach Adagrad scales the gradient first, then divides
        r.p = r.p.addcdiv(r.scale(g, -clr), std)
    else:
        r.p = r.p.addcdiv(g, std, value=-clr)
    r.term("theta_t", "theta_{t-1} - clr*g_t/std", r.p, "param")
    r.new_state["sum"] = s


def adadelta(r: Run) -> None:
    h = r.h
    rho, eps = h["rho"], h["eps"]
    r.step()
    g = r.l2(r.g())
    sq0, acc0 = r.st("square_avg"), r.st("acc_delta")
    r.term("v_{t-1}", "square_avg before the step", sq0)
    r.term("u_{t-1}", "acc_delta before the step", acc0)
    sq = r.scale(sq0, rho).addcmul(g, g, value=1 - rho)
    r.term("v_t", "rho*v_{t-1} + (1 - rho)*g_t^2", sq, "square_avg")
    std = sq.add(eps).sqrt()
    r.term("sqrt(v_t + eps)", "sqrt(v_t + eps)", std)
    delta = acc0.add(eps).sqrt()
    r.term("sqrt(u_{t-1} + eps)", "sqrt(u_{t-1} + eps)", delta)
    delta = delta.div(std).mul(g)
    r.term("delta_x", "sqrt(u_{t-1} + eps)/sqrt(v_t + eps)*g_t", delta)
    acc = r.scale(acc0, rho).addcmul(delta, delta, value=1 - rho)
    r.term("u_t", "rho*u_{t-1} + (1 - rho)*delta_x^2", acc, "acc_delta")
    r.p = r.p.add(delta, alpha=-h["lr"])
    r.term("theta_t", "theta_{t-1} - lr*delta_x", r.p, "param")
    r.new_state.update(square_avg=sq, acc_delta=acc)


def adamax(r: Run) -> None:
    h = r.h
    b1, b2 = h["betas"]
    g = r.g()
    t = r.step()
    g = r.l2(g)
    m0, u0 = r.st("exp_avg"), r.st("exp_inf")
    r.term("m_{t-1}", "exp_avg before the step", m0)
    r.term("u_{t-1}", "exp_inf before the step", u0)
    m = m0.lerp(g, 1 - b1)
    r.term("m_t", "beta1*m_{t-1} + (1 - beta1)*g_t", m, "exp_avg")
    u = torch.maximum(r.scale(u0, b2), g.abs().add(h["eps"]))
    r.term("u_t", "max(beta2*u_{t-1}, |g_t| + eps)", u, "exp_inf")
    bc = bias_correction(b1, t)
    r.term("bias_correction", "1 - beta1^t", bc)
    clr = h["lr"] / bc
    r.term("clr", "lr / bias_correction", clr)
    r.p = r.p.addcdiv(m, u, value=-clr)
    r.term("theta_t", "theta_{t-1} - clr*m_t/u_t", r.p, "param")
    r.new_state.update(exp_avg=m, exp_inf=u)


def asgd(r: Run) -> None:
    h = r.h
    lr, lambd, alpha, t0 = h["lr"], h["lambd"], h["alpha"], h["t0"]
    g = r.g()
    t = r.step()
    g = r.l2(g)
    eta = r.state.get("eta")
    eta = float(eta) if eta is not None else float(torch.as_tensor(lr, dtype=scalar_dtype()))
    mu = r.state.get("mu")
    mu = mu if mu is not None else torch.ones((), dtype=scalar_dtype())
    r.term("eta_{t-1}", "state['eta'] (starts at lr)", eta)
    r.term("mu_{t-1}", "state['mu'] (starts at 1)", mu)
    ax0 = r.st("ax")
    if r.impl == "foreach":  # torch's foreach ASGD folds the decay into the gradient and always averages
        inter = g.add(r.p, alpha=lambd)
        r.term("g_t + lambd*theta", "g_t + lambd*theta_{t-1}", inter)
        r.p = r.p.addcmul(inter, torch.as_tensor(eta, dtype=scalar_dtype()), value=-1)
        r.term("theta_t", "theta_{t-1} - eta*(g_t + lambd*theta_{t-1})", r.p, "param")
        ax = ax0.addcmul(r.p.sub(ax0), mu)
        r.term("ax_t", "ax_{t-1} + mu*(theta_t - ax_{t-1})", ax, "ax")
    else:
        r.p = r.p.mul(1 - lambd * eta)
        r.term("theta (decayed)", "theta_{t-1}*(1 - lambd*eta)", r.p)
        r.p = r.p.add(g, alpha=-eta)
        r.term("theta_t", "theta - eta*g_t", r.p, "param")
        if float(mu) != 1:
            ax = ax0.add(r.p.sub(ax0).mul(mu))
            r.term("ax_t", "ax_{t-1} + mu*(theta_t - ax_{t-1})", ax, "ax")
        else:
            ax = r.p.clone()
            r.term("ax_t", "theta_t (mu is 1: the average is the parameter)", ax, "ax")
    if r.impl == "foreach":  # computed on the float step tensor there, in Python floats in the for-loop
        t = torch.tensor(t, dtype=scalar_dtype())
    new_eta = torch.as_tensor(lr / ((1 + lambd * lr * t) ** alpha))
    new_mu = torch.as_tensor(1 / max(1, float(t) - t0))
    r.term("eta_t", "lr / (1 + lambd*lr*t)^alpha", new_eta.to(scalar_dtype()), "eta")
    r.term("mu_t", "1 / max(1, t - t0)", new_mu.to(scalar_dtype()), "mu")
    r.new_state.update(ax=ax)


def nadam(r: Run) -> None:
    h = r.h
    b1, b2 = h["betas"]
    lr, wd, eps, psi = h["lr"], h["weight_decay"], h["eps"], h["momentum_decay"]
    g = r.g()
    t = r.step()
    bc2 = bias_correction(b2, t)
    r.term("bias_correction2", "1 - beta2^t", bc2)
    if wd != 0:
        if h.get("decoupled_weight_decay", False):
            r.p = r.scale(r.p, 1 - lr * wd)
            r.term("theta (decayed)", "theta_{t-1}*(1 - lr*weight_decay)  (decoupled)", r.p)
        else:
            g = g.add(r.p, alpha=wd)
            r.term("g_t (L2)", "g_t + weight_decay*theta_{t-1}", g)
    mu = b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
    mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
    r.term("mu_t", "beta1*(1 - 0.5*0.96^(t*momentum_decay))", mu)
    r.term("mu_{t+1}", "beta1*(1 - 0.5*0.96^((t+1)*momentum_decay))", mu_next)
    prod0 = r.state.get("mu_product")
    prod0 = prod0 if prod0 is not None else torch.tensor(1.0, dtype=scalar_dtype())
    prod = prod0 * mu
    r.term("mu_product", "mu_1*...*mu_t", prod, "mu_product")
    m = r.st("exp_avg").lerp(g, 1 - b1)
    r.term("m_t", "beta1*m_{t-1} + (1 - beta1)*g_t", m, "exp_avg")
    v = r.scale(r.st("exp_avg_sq"), b2).addcmul(g, g, value=1 - b2)
    r.term("v_t", "beta2*v_{t-1} + (1 - beta2)*g_t^2", v, "exp_avg_sq")
    if r.impl == "foreach":  # torch's foreach NAdam divides the root (its for-loop, v_t; 13 ulp apart measured)
        denom = v.sqrt().div(bc2 ** 0.5).add(eps)
        r.term("denom", "sqrt(v_t)/sqrt(bias_correction2) + eps  (foreach)", denom)
    else:
        denom = v.div(bc2).sqrt().add(eps)
        r.term("denom", "sqrt(v_t/bias_correction2) + eps", denom)
    prod_next = float(prod) * mu_next
    c_g = -lr * (1.0 - mu) / (1.0 - float(prod))
    c_m = (-lr * mu_next) / (1.0 - prod_next)
    r.term("coef_g", "-lr*(1 - mu_t)/(1 - mu_product)", c_g)
    r.term("coef_m", "-lr*mu_{t+1}/(1 - mu_product*mu_{t+1})", c_m)
    r.p = r.p.addcdiv(g, denom, value=c_g)
    r.p = r.p.addcdiv(m, denom, value=c_m)
    r.term("theta_t", "theta + coef_g*g_t/denom + coef_m*m_t/denom", r.p, "param")
    r.new_state.update(exp_avg=m, exp_avg_sq=v)


def radam(r: Run) -> None:
    h = r.h
    b1, b2 = h["betas"]
    lr, wd, eps = h["lr"], h["weight_decay"], h["eps"]
    g = r.g()
    t = r.step()
    if wd != 0:
        if h.get("decoupled_weight_decay", False):
            r.p = r.scale(r.p, 1 - lr * wd)
            r.term("theta (decayed)", "theta_{t-1}*(1 - lr*weight_decay)  (decoupled)", r.p)
        else:
            g = g.add(r.p, alpha=wd)
            r.term("g_t (L2)", "g_t + weight_decay*theta_{t-1}", g)
    m = r.st("exp_avg").lerp(g, 1 - b1)
    r.term("m_t", "beta1*m_{t-1} + (1 - beta1)*g_t", m, "exp_avg")
    v = r.scale(r.st("exp_avg_sq"), b2).addcmul(g, g, value=1 - b2)
    r.term("v_t", "beta2*v_{t-1} + (1 - beta2)*g_t^2", v, "exp_avg_sq")
    bc1, bc2 = bias_correction(b1, t), bias_correction(b2, t)
    m_hat = m / bc1
    r.term("m_hat", "m_t / (1 - beta1^t)", m_hat)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * (b2 ** t) / bc2
    r.term("rho_inf", "2/(1 - beta2) - 1", rho_inf)
    r.term("rho_t", "rho_inf - 2*t*beta2^t/(1 - beta2^t)", rho_t)
    rect = 0.0
    if rho_t > 5.0:
        adaptive = (bc2 ** 0.5) / v.sqrt().add(eps)
        r.term("l_t", "sqrt(1 - beta2^t)/(sqrt(v_t) + eps)", adaptive)
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        r.term("r_t", "sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t))", rect)
    if r.impl == "foreach":
        # torch's foreach RAdam folds both cases into one factor per element (the for-loop divides m_t
        # by the bias correction first): s = 1/((sqrt(v_t) + eps) / (-sqrt(1 - beta2^t)*lr*r_t/(1 - beta1^t)))
        # - lr*[r_t == 0]/(1 - beta1^t), then theta + m_t*s. Measured 3 ulp from the for-loop's order.
        unrect = 0.0 if rect > 0 else 1.0
        s_t = v.sqrt().add(eps).div((bc2 ** 0.5) * (lr * rect / bc1) * -1).reciprocal().add((lr * unrect / bc1) * -1)
        r.term("s_t", "-sqrt(1 - beta2^t)*lr*r_t/((1 - beta1^t)(sqrt(v_t) + eps)) if rho_t > 5 "
               "else -lr/(1 - beta1^t)  (foreach)", s_t)
        r.p = r.p.addcmul(m, s_t)
        r.term("theta_t", "theta + m_t*s_t  (foreach: the same update, torch's order)", r.p, "param")
    elif rho_t > 5.0:
        r.p = r.p.add(m_hat * lr * adaptive * rect, alpha=-1.0)
        r.term("theta_t", "theta - lr*m_hat*l_t*r_t  (rho_t > 5: rectified)", r.p, "param")
    else:
        r.p = r.p.add(m_hat * lr, alpha=-1.0)
        r.term("theta_t", "theta - lr*m_hat  (rho_t <= 5: no adaptive term yet)", r.p, "param")
    r.new_state.update(exp_avg=m, exp_avg_sq=v)


def rmsprop(r: Run) -> None:
    h = r.h
    alpha, eps, lr, mom = h["alpha"], h["eps"], h["lr"], h["momentum"]
    g = r.g()
    r.step()
    g = r.l2(g)
    sq = r.scale(r.st("square_avg"), alpha).addcmul(g, g, value=1 - alpha)
    r.term("v_t", "alpha*v_{t-1} + (1 - alpha)*g_t^2", sq, "square_avg")
    if h["centered"]:
        ga = r.st("grad_avg").lerp(g, 1 - alpha)
        r.term("g_ave_t", "alpha*g_ave_{t-1} + (1 - alpha)*g_t  (centered)", ga, "grad_avg")
        avg = sq.addcmul(ga, ga, value=-1).sqrt()
        r.new_state["grad_avg"] = ga
        text = "sqrt(v_t - g_ave_t^2) + eps"
    else:
        avg = sq.sqrt()
        text = "sqrt(v_t) + eps"
    avg = avg.add(eps)
    r.term("denom", text, avg)
    if mom > 0:
        buf = r.scale(r.st("momentum_buffer"), mom).addcdiv(g, avg)
        r.term("b_t", "momentum*b_{t-1} + g_t/denom", buf, "momentum_buffer")
        r.p = r.p.add(buf, alpha=-lr)
        r.term("theta_t", "theta_{t-1} - lr*b_t", r.p, "param")
        r.new_state["momentum_buffer"] = buf
    else:
        r.p = r.p.addcdiv(g, avg, value=-lr)
        r.term("theta_t", "theta_{t-1} - lr*g_t/denom", r.p, "param")
    r.new_state["square_avg"] = sq


def rprop(r: Run) -> None:
    h = r.h
    etaminus, etaplus = h["etas"]
    smin, smax = h["step_sizes"]
    g = r.g()
    r.step()
    prev = r.st("prev")
    size0 = r.st("step_size", torch.full_like(r.p, h["lr"]))
    r.term("g_prev", "state['prev'] (the last gradient kept)", prev)
    r.term("eta_{t-1}", "state['step_size'] before the step", size0)
    sign = g.mul(prev).sign()
    r.term("sign(g_prev*g_t)", "sign(g_prev*g_t)", sign)
    sign[sign.gt(0)] = etaplus
    sign[sign.lt(0)] = etaminus
    sign[sign.eq(0)] = 1
    r.term("factor", "etaplus if same sign, etaminus if it flipped, 1 if either is 0", sign)
    size = size0.mul(sign).clamp(smin, smax)
    r.term("eta_t", "clamp(eta_{t-1}*factor, step_size_min, step_size_max)", size, "step_size")
    g = g.clone()
    g[sign.eq(etaminus)] = 0
    r.term("g_t (kept)", "0 where the sign flipped, else g_t", g, "prev")
    r.p = r.p.addcmul(g.sign(), size, value=-1)
    r.term("theta_t", "theta_{t-1} - eta_t*sign(g_t)", r.p, "param")
    r.new_state.update(prev=g, step_size=size)


def sparse_adam(r: Run) -> None:
    """SparseAdam: Adam on the gradient's nonzero entries only; the others keep their values and state."""
    h = r.h
    b1, b2 = h["betas"]
    g = r.g()
    mask = r.sparse_mask if r.sparse_mask is not None else torch.ones_like(g, dtype=torch.bool)
    t = float(r.state.get("step", 0) + 1)
    r.term("t", "step count (state['step'] + 1)", t)
    r.term("in the gradient", "1 if the sparse gradient has this element, else 0 (no update)", mask.to(r.dtype))
    m0, v0 = r.st("exp_avg"), r.st("exp_avg_sq")
    m_upd = g.sub(m0).mul(1 - b1)
    m = torch.where(mask, m0 + m_upd, m0)
    r.term("m_t", "m_{t-1} + (1 - beta1)*(g_t - m_{t-1})", m, "exp_avg")
    v_upd = g.pow(2).sub(v0).mul(1 - b2)
    v = torch.where(mask, v0 + v_upd, v0)
    r.term("v_t", "v_{t-1} + (1 - beta2)*(g_t^2 - v_{t-1})", v, "exp_avg_sq")
    numer = m_upd.add(m0)
    denom = v_upd.add(v0).sqrt().add(h["eps"])
    r.term("denom", "sqrt(v_t) + eps", denom)
    bc1, bc2 = bias_correction(b1, t), bias_correction(b2, t)
    step_size = h["lr"] * math.sqrt(bc2) / bc1
    r.term("step_size", "lr*sqrt(1 - beta2^t)/(1 - beta1^t)", step_size)
    upd = -step_size * numer.div(denom)
    r.p = torch.where(mask, r.p.add(upd), r.p)
    r.term("theta_t", "theta_{t-1} - step_size*m_t/denom  (only where the gradient has entries)", r.p, "param")
    r.new_state.update(exp_avg=m, exp_avg_sq=v)


RULES = {"SGD": sgd, "Adam": adam, "AdamW": adam, "Adagrad": adagrad, "Adadelta": adadelta, "Adamax": adamax,
         "ASGD": asgd, "NAdam": nadam, "RAdam": radam, "RMSprop": rmsprop, "Rprop": rprop,
         "SparseAdam": sparse_adam}
