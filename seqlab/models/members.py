"""A population's recurrences with a hand-written backward (issue 20): the members' fast path.

A population (seqlab.population) trains M same-shaped runs as one model with stacked weights. Through
the step path, every time step of every cell is a dozen autograd nodes, and at the lab's sizes their
bookkeeping (saving, the engine's per-node work, the backward of ``chunk``/``unbind``/``stack``) costs as
much as the arithmetic. Here the whole recurrence of one layer over T steps is one autograd node: the
forward runs the loop with no graph, keeping the gate values it needs, and the backward runs the loop
backwards by the chain rule written out below, then forms the weight gradients. It is for stacked
weights only; a lone run keeps torch's fused kernel (its ``forward``) and the probe keeps the step path.

Layout, measured (GRU, M = 8, B = 64, T = 200, H = 64, one thread). A first version took the cell's
input drive u = W_ih x + b for all steps at once and kept every step in one (T, M, B, .) buffer, as the
step path does; it was no faster than the step path: tensors of 30-100 MB are each a fresh mmap whose
pages fault on first touch at every training step (glibc maps blocks above 32 MB), and the bias
gradient's sum over a permuted (M, B, T, 3H) gradient alone took 107 ms. So here the input's product is
taken step by step inside the loop (its gradients accumulated per step), every step keeps its own small
tensors, and the last layer hands back only the steps the loss reads. And the states are kept feature-
major, h_t as (M, H, B) (the products W h with h as columns): a gate's block of a pre-activation (M, G, B)
is then one contiguous (H, B) block per member, where in (M, B, G) it is H numbers per row, and torch's
elementwise kernels ran 2-5x slower on such strided slices (tanh on 16k numbers: 50 us against 11).

The maps and their backward (row-vector notation), with g_t = dL/dh_t (the output's gradient plus what
flows back from step t + 1), u_t = W_ih x_t + b_ih (+ b_hh for the RNN and LSTM, whose biases simply
add), and for every cell, from its du_t below: dW_ih += du_t^T x_t, db_ih += du_t, dL/dx_t = du_t W_ih.

  tanh RNN (and relu, sigmoid, identity): h_t = f(a_t), a_t = u_t + W h_{t-1}
      da_t = g_t f'(a_t),  dL/dh_{t-1} += da_t W,  dW += da_t^T h_{t-1},  du_t = da_t

  GRU (torch's gates r, z, n; z keeps): gh_t = W h_{t-1} + b_hh = (gr, gz, gn)
      r = s(u_r + gr), z = s(u_z + gz), n = tanh(u_n + r gn), h_t = n + z (h_{t-1} - n)
      dn_pre = g (1 - z) (1 - n^2),  dz_pre = g (h_{t-1} - n) z (1 - z),  dr_pre = dn_pre gn r (1 - r)
      du_t = (dr_pre, dz_pre, dn_pre),  dgh_t = (dr_pre, dz_pre, dn_pre r)
      dL/dh_{t-1} = g z + dgh_t W,  dW += dgh_t^T h_{t-1},  db_hh += dgh_t

  LSTM (gates i, f, g, o): (i, f, g, o) = (s, s, tanh, s)(u_t + W h_{t-1}),
      c_t = f c_{t-1} + i g,  h_t = o tanh(c_t);  with k = dL/dc_t from step t + 1:
      dc = k + g_h o (1 - tanh(c_t)^2),  do_pre = g_h tanh(c_t) o (1 - o)
      di_pre = dc g i (1 - i),  df_pre = dc c_{t-1} f (1 - f),  dg_pre = dc i (1 - g^2)
      du_t = (di_pre, df_pre, dg_pre, do_pre),  dL/dh_{t-1} = du_t W,  dL/dc_{t-1} = dc f
"""
from __future__ import annotations

import torch
from torch.autograd import Function

_tanh_back = torch.ops.aten.tanh_backward  # (grad, tanh's output) -> grad (1 - out^2)
_sigmoid_back = torch.ops.aten.sigmoid_backward  # (grad, sigmoid's output) -> grad out (1 - out)

# Activations whose derivative is a function of their output (so the backward needs only h_t).
RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")


def _activate_(a: torch.Tensor, activation: str) -> torch.Tensor:
    """f(a) in place."""
    if activation == "tanh":
        return a.tanh_()
    if activation == "relu":
        return a.relu_()
    if activation == "sigmoid":
        return a.sigmoid_()
    return a


def _activation_back(grad: torch.Tensor, out: torch.Tensor, activation: str) -> torch.Tensor:
    """grad f'(a) from f's output."""
    if activation == "tanh":
        return _tanh_back(grad, out)
    if activation == "relu":
        return grad * (out > 0)
    if activation == "sigmoid":
        return _sigmoid_back(grad, out)
    return grad


class _Input:
    """The input's side of a recurrence, u_t = W_ih x_t + b: its product at each step of the forward,
    and in the backward, given du_t, the gradients of W_ih, b and (when it needs one) x."""

    def __init__(self, x: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor | None = None):
        self.x, self.w_ih = x, w_ih  # (T, M, D, B), (M, G, D)
        self.bias = None if bias is None else bias.unsqueeze(-1)  # (M, G, 1); the forward's only

    def drive(self, t: int) -> torch.Tensor:
        return torch.baddbmm(self.bias, self.w_ih, self.x[t])  # (M, G, B)

    def start_backward(self, needs_dx: bool) -> None:
        T, M, D, B = self.x.shape
        self.d_w = torch.zeros_like(self.w_ih)
        self.d_b = self.x.new_zeros(M, self.w_ih.shape[1], B)  # summed over t
        self.d_x = self.x.new_zeros(self.x.shape) if needs_dx else None  # zero where no gradient reaches

    def back(self, t: int, du: torch.Tensor) -> None:
        self.d_w.baddbmm_(du, self.x[t].mT)
        self.d_b += du
        if self.d_x is not None:
            torch.bmm(self.w_ih.mT, du, out=self.d_x[t])

    def grads(self) -> tuple:
        return self.d_x, self.d_w, self.d_b.sum(-1)


def _outputs(hs: list[torch.Tensor], steps: tuple[int, ...] | None) -> torch.Tensor:
    return torch.stack(hs[1:] if steps is None else [hs[t + 1] for t in steps])  # (T or L, M, H, B)


def _out_grads(d_out: torch.Tensor, T: int, steps: tuple[int, ...] | None) -> list:
    """dL/dh_t from the output at each step t (None where the output was not handed back)."""
    d_out = d_out.contiguous()  # (T or L, M, H, B)
    if steps is None:
        return list(d_out.unbind(0))
    at = [None] * T
    for k, t in enumerate(steps):
        at[t] = d_out[k]
    return at


def _add(carry: torch.Tensor | None, grad: torch.Tensor | None) -> torch.Tensor:
    if carry is None:
        return grad
    return carry if grad is None else carry + grad


def _begin_backward(ctx, d_out: torch.Tensor) -> tuple:
    """What every backward starts from: x, W_hh, the other saved tensors, the input's side ready to take
    its gradients, dL/dW_hh = 0, and each step's gradient from the output."""
    x, w_ih, w_hh, *rest = ctx.saved_tensors
    inp = _Input(x, w_ih)
    inp.start_backward(ctx.needs_input_grad[0])
    return x, w_hh, rest, inp, torch.zeros_like(w_hh), _out_grads(d_out, x.shape[0], ctx.steps)


# b_ih and b_hh enter the RNN's and LSTM's maps only as their sum, so their gradients are equal; each
# still gets its own tensor (a clone): the loop scales every member's gradients in place when it clips
# them (seqlab.population.clip_members), and one tensor handed to both would be scaled twice.


class _RNN(Function):
    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, activation, steps):
        inp = _Input(x, w_ih, b_ih + b_hh)
        hs = [x.new_zeros(x.shape[1], w_hh.shape[-1], x.shape[3])]  # h_0 = 0, then h_1..h_T, (M, H, B) each
        for t in range(x.shape[0]):
            hs.append(_activate_(inp.drive(t).baddbmm_(w_hh, hs[t]), activation))
        ctx.save_for_backward(x, w_ih, w_hh, *hs)
        ctx.activation, ctx.steps = activation, steps
        return _outputs(hs, steps)

    @staticmethod
    def backward(ctx, d_out):
        x, w_hh, hs, inp, d_w, out_grads = _begin_backward(ctx, d_out)
        carry = None
        for t in range(x.shape[0] - 1, -1, -1):
            g = _add(carry, out_grads[t])
            if g is None:
                continue  # nothing reaches this step or any before it
            du = _activation_back(g, hs[t + 1], ctx.activation)
            inp.back(t, du)
            d_w.baddbmm_(du, hs[t].mT)
            carry = torch.bmm(w_hh.mT, du)
        d_x, d_w_ih, d_b = inp.grads()
        return d_x, d_w_ih, d_b, d_w, d_b.clone(), None, None


class _GRU(Function):
    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, steps):
        inp, H = _Input(x, w_ih, b_ih), w_hh.shape[-1]
        hs = [x.new_zeros(x.shape[1], H, x.shape[3])]
        saved = []  # (r, z), n and gn = W_hn h + b_hn of every step
        bias = b_hh.unsqueeze(-1)  # (M, 3H, 1)
        for t in range(x.shape[0]):
            h, u = hs[t], inp.drive(t)
            gh = torch.baddbmm(bias, w_hh, h)  # (M, 3H, B)
            rz = torch.add(u[:, :2 * H], gh[:, :2 * H]).sigmoid_()  # (M, 2H, B)
            n = torch.addcmul(u[:, 2 * H:], rz[:, :H], gh[:, 2 * H:]).tanh_()
            hs.append(torch.lerp(n, h, rz[:, H:]))  # n + z (h - n)
            saved += [rz, n, gh[:, 2 * H:]]
        ctx.save_for_backward(x, w_ih, w_hh, *hs, *saved)
        ctx.steps = steps
        return _outputs(hs, steps)

    @staticmethod
    def backward(ctx, d_out):
        x, w_hh, rest, inp, d_w, out_grads = _begin_backward(ctx, d_out)
        T, H = x.shape[0], w_hh.shape[-1]
        hs, saved, carry = rest[:T + 1], rest[T + 1:], None
        d_gh = x.new_zeros(x.shape[1], 3 * H, x.shape[3])  # dL/d(W h + b_hh) summed over the steps (for b_hh)
        for t in range(T - 1, -1, -1):
            g = _add(carry, out_grads[t])
            if g is None:
                continue
            rz, n, gn = saved[3 * t:3 * t + 3]
            r, z = rz[:, :H], rz[:, H:]
            gz = g * z
            dn = _tanh_back(g - gz, n)  # dL/du_n
            dgh = torch.empty_like(d_gh)  # dL/d(W h_{t-1} + b_hh)
            _sigmoid_back(dn * gn, r, grad_input=dgh[:, :H])
            _sigmoid_back(g * (hs[t] - n), z, grad_input=dgh[:, H:2 * H])
            torch.mul(dn, r, out=dgh[:, 2 * H:])
            inp.back(t, torch.cat((dgh[:, :2 * H], dn), 1))  # dL/du_t
            d_gh += dgh
            d_w.baddbmm_(dgh, hs[t].mT)
            carry = torch.baddbmm(gz, w_hh.mT, dgh)
        d_x, d_w_ih, d_b_ih = inp.grads()
        return d_x, d_w_ih, d_b_ih, d_w, d_gh.sum(-1), None


class _LSTM(Function):
    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, steps):
        inp, H = _Input(x, w_ih, b_ih + b_hh), w_hh.shape[-1]
        hs = [x.new_zeros(x.shape[1], H, x.shape[3])]
        cs = [hs[0]]
        saved = []  # s(pre) (its i, f and o blocks), g and tanh(c_t) of every step
        for t in range(x.shape[0]):
            pre = inp.drive(t).baddbmm_(w_hh, hs[t])  # (M, 4H, B)
            act = torch.sigmoid(pre)  # i, f, o (and the g block's, unused): one op on one contiguous tensor
            g = torch.tanh(pre[:, 2 * H:3 * H])
            cs.append(torch.addcmul(act[:, :H] * g, act[:, H:2 * H], cs[t]))
            tc = torch.tanh(cs[t + 1])
            hs.append(act[:, 3 * H:] * tc)
            saved += [act, g, tc]
        ctx.save_for_backward(x, w_ih, w_hh, *hs, *cs, *saved)
        ctx.steps = steps
        return _outputs(hs, steps)

    @staticmethod
    def backward(ctx, d_out):
        x, w_hh, rest, inp, d_w, out_grads = _begin_backward(ctx, d_out)
        T, H = x.shape[0], w_hh.shape[-1]
        hs, cs, saved = rest[:T + 1], rest[T + 1:2 * T + 2], rest[2 * T + 2:]
        carry_h = carry_c = None
        for t in range(T - 1, -1, -1):
            gh = _add(carry_h, out_grads[t])
            if gh is None:
                continue
            act, g, tc = saved[3 * t:3 * t + 3]
            i, f, o = act[:, :H], act[:, H:2 * H], act[:, 3 * H:]
            dc = _tanh_back(gh * o, tc)
            if carry_c is not None:
                dc += carry_c
            du = x.new_empty(x.shape[1], 4 * H, x.shape[3])
            _sigmoid_back(dc * g, i, grad_input=du[:, :H])
            _sigmoid_back(dc * cs[t], f, grad_input=du[:, H:2 * H])
            _tanh_back(dc * i, g, grad_input=du[:, 2 * H:3 * H])
            _sigmoid_back(gh * tc, o, grad_input=du[:, 3 * H:])
            inp.back(t, du)
            d_w.baddbmm_(du, hs[t].mT)
            carry_h = torch.bmm(w_hh.mT, du)
            carry_c = dc * f
        d_x, d_w_ih, d_b = inp.grads()
        return d_x, d_w_ih, d_b, d_w, d_b.clone(), None


def _time_major(x: torch.Tensor) -> torch.Tensor:
    return x.permute(2, 0, 3, 1).contiguous()  # (M, B, T, D) -> (T, M, D, B)


def _member_major(hs: torch.Tensor) -> torch.Tensor:
    return hs.permute(1, 3, 0, 2)  # (T, M, H, B) -> (M, B, T, H), a view


def _steps(steps: torch.Tensor | None) -> tuple[int, ...] | None:
    return None if steps is None else tuple(int(t) for t in steps.tolist())


def rnn_members(x, w_ih, b_ih, w_hh, b_hh, activation: str, steps=None) -> torch.Tensor:
    """h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) from h_0 = 0 for every member: x (M, B, T, D),
    w_ih (M, H, D), w_hh (M, H, H), biases (M, H) -> (M, B, T, H), or at ``steps`` only (M, B, L, H).
    ``activation`` one of ``RNN_ACTIVATIONS``."""
    return _member_major(_RNN.apply(_time_major(x), w_ih, b_ih, w_hh, b_hh, activation, _steps(steps)))


def gru_members(x, w_ih, b_ih, w_hh, b_hh, steps=None) -> torch.Tensor:
    """torch's GRU from h_0 = 0 for every member: x (M, B, T, D), w_ih (M, 3H, D), b_ih (M, 3H),
    w_hh (M, 3H, H), b_hh (M, 3H) -> (M, B, T, H), or at ``steps`` only (M, B, L, H)."""
    return _member_major(_GRU.apply(_time_major(x), w_ih, b_ih, w_hh, b_hh, _steps(steps)))


def lstm_members(x, w_ih, b_ih, w_hh, b_hh, steps=None) -> torch.Tensor:
    """torch's LSTM from h_0 = c_0 = 0 for every member: x (M, B, T, D), w_ih (M, 4H, D), b_ih and b_hh
    (M, 4H), w_hh (M, 4H, H) -> the h_t, (M, B, T, H), or at ``steps`` only (M, B, L, H)."""
    return _member_major(_LSTM.apply(_time_major(x), w_ih, b_ih, w_hh, b_hh, _steps(steps)))
