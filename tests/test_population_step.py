"""A population's clipping and optimizer step, all members at once (seqlab.population.clip_members and
step_members, issue 20): each member's update is the one its own ``clip_grad_norm_`` and its own
``torch.optim.Adam.step()`` make, bit for bit, with its own global norm, learning rate and optimizer
state; a member's state dict resumes exactly; an optimizer that cannot join steps on its own."""
import copy

import pytest
import torch

from seqlab.population import clip_members, step_members


def members(lrs, seed=0, optim=torch.optim.Adam, **kw):
    torch.manual_seed(seed)
    out = []
    for lr in lrs:
        model = torch.nn.ModuleList([torch.nn.GRU(3, 5, batch_first=True), torch.nn.Linear(5, 2)])
        out.append((model, optim(model.parameters(), lr=lr, **kw)))
    return out


def twin(ms, optim=torch.optim.Adam, **kw):
    """The same models and optimizers (state included), as separate objects."""
    out = []
    for model, opt in ms:
        m = copy.deepcopy(model)
        o = optim(m.parameters(), lr=opt.param_groups[0]["lr"], **kw)
        o.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from checkpoint.pt: no shared tensors
        out.append((m, o))
    return out


def backward(ms, x, scales):
    """Each member's own loss (scaled: some members' gradients are far above the clipping norm, some below)."""
    for (model, opt), scale in zip(ms, scales):
        opt.zero_grad(set_to_none=True)
        (model[1](model[0](x)[0]).pow(2).mean() * scale).backward()


def assert_same(a, b):
    for (ma, oa), (mb, ob) in zip(a, b):
        for pa, pb in zip(ma.parameters(), mb.parameters()):
            assert torch.equal(pa, pb)
        sa, sb = oa.state_dict(), ob.state_dict()
        assert sa["param_groups"] == sb["param_groups"] and sa["state"].keys() == sb["state"].keys()
        for i in sa["state"]:
            assert sa["state"][i].keys() == sb["state"][i].keys()
            for k in sa["state"][i]:
                assert torch.equal(sa["state"][i][k], sb["state"][i][k]), (i, k)


@pytest.mark.parametrize("kw", [{}, {"weight_decay": 0.01, "amsgrad": True}])
def test_stacked_clip_and_adam_equal_each_members_own_step_by_step(kw):
    lrs = (1e-3, 3e-3, 1e-2, 1e-3)
    alone = members(lrs, **kw)
    together = twin(alone, **kw)
    hooks = [0] * len(lrs)
    for i, (_, opt) in enumerate(together):
        opt.register_step_post_hook(lambda *_, i=i: hooks.__setitem__(i, hooks[i] + 1))
    max_norms = [1.0, 1.0, float("inf"), 0.5]  # inf: measure only (grad_clip=0)
    gen = torch.Generator().manual_seed(1)
    for step in range(12):
        x = torch.randn(4, 6, 3, generator=gen)
        scales = [100.0, 0.01, 100.0, 1.0] if step % 2 else [0.01, 100.0, 1.0, 100.0]
        backward(alone, x, scales)
        backward(together, x, scales)
        norms_alone = [torch.nn.utils.clip_grad_norm_(m.parameters(), n) for (m, _), n in zip(alone, max_norms)]
        for _, opt in alone:
            opt.step()
        norms = clip_members([list(m.parameters()) for m, _ in together], max_norms)
        step_members([opt for _, opt in together])
        assert [float(n) for n in norms] == [float(n) for n in norms_alone]
        assert_same(alone, together)
    assert hooks == [12] * len(lrs)  # each optimizer's post-step hooks ran once a step (per-layer update ratios)
    # the clipping was active for some members and not for others, and the learning rates differ
    assert max(float(n) for n in norms) > 1 > min(float(n) for n in norms)


def test_a_member_state_dict_from_the_stacked_step_resumes_exactly():
    """Stacked steps, then a member's optimizer state dict (what checkpoint.pt holds) loaded into a fresh
    Adam: continuing gives the same updates as the uninterrupted stacked run, and as its own step()."""
    run = members((1e-3, 3e-3))
    gen = torch.Generator().manual_seed(2)
    xs = [torch.randn(4, 6, 3, generator=gen) for _ in range(8)]

    def steps(ms, xs, stacked):
        for x in xs:
            backward(ms, x, [10.0, 10.0])
            clip_members([list(m.parameters()) for m, _ in ms], [1.0, 1.0])
            if stacked:
                step_members([o for _, o in ms])
            else:
                for _, o in ms:
                    o.step()

    steps(run, xs[:4], True)
    resumed = twin(run)  # a fresh process: the models and optimizers rebuilt from their state dicts
    alone = twin(run)
    steps(run, xs[4:], True)
    steps(resumed, xs[4:], True)
    assert_same(run, resumed)
    steps(alone, xs[4:], False)  # a member's checkpoint continues as a lone run's step(): the same
    assert_same(run, alone)


def test_an_optimizer_that_cannot_join_steps_on_its_own():
    """SGD (or an Adam with a pre-step hook) is stepped by its own step(); the Adams around it still stack."""
    adams = members((1e-3, 3e-3))
    sgd = members((0.1,), seed=3, optim=torch.optim.SGD, momentum=0.9)
    ms = [adams[0], sgd[0], adams[1]]
    ref = twin(adams) + twin(sgd, optim=torch.optim.SGD, momentum=0.9)
    ref = [ref[0], ref[2], ref[1]]
    pre = []
    ms[2][1].register_step_pre_hook(lambda *_: pre.append(1))
    x = torch.randn(4, 6, 3)
    for _ in range(3):
        backward(ms, x, [1.0, 1.0, 1.0])
        backward(ref, x, [1.0, 1.0, 1.0])
        step_members([o for _, o in ms])
        for _, o in ref:
            o.step()
    assert_same(ref, ms)
    assert pre == [1, 1, 1]
