"""Probabilistic dynamics ensemble: one batched network, weights ``[E, in, out]`` (MBPO, Janner et al. 2019 §4).

Each member predicts a diagonal Gaussian over ``[Δobs, reward]`` from standardised ``[obs, action]``; the
log-variance is softly bounded between (learned or fixed) ``max_logvar``/``min_logvar`` (Chua et al. 2018, App. A.1)
with penalty ``bound_penalty * (Σmax − Σmin)``. Members train on bootstrap resamples, stop early on a held-out
split, restore their best weights, and the ``n_elites`` lowest-validation-error members are used for rollouts.
Rollouts group samples by their chosen member so every member only runs on the rows it owns.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robodyna.data.batch import Batch
from robodyna.learn.config import EnsembleConfig

log = logging.getLogger(__name__)


class NotFittedError(RuntimeError):
    """The ensemble was asked to predict before it was fit on any data."""


@dataclass
class FitReport:
    """Outcome of one :meth:`DynamicsEnsemble.fit`."""

    epochs: int
    val_mse: list[float]
    elites: list[int]
    train_loss: float
    n_train: int
    n_holdout: int
    seconds: float
    stopped_by: str
    extra: dict[str, float] = field(default_factory=dict)


def _trunc_normal(shape: tuple[int, ...], std: float, gen: torch.Generator) -> torch.Tensor:
    t = torch.empty(shape)
    t.normal_(0.0, std, generator=gen)
    return t.clamp_(-2 * std, 2 * std)


class EnsembleNet(nn.Module):
    """E parallel MLPs (SiLU) as batched matmuls; ``forward`` takes raw inputs ``[E, N, in]``."""

    in_mean: torch.Tensor  # registered buffers (declared for type checkers)
    in_std: torch.Tensor
    out_mean: torch.Tensor
    out_std: torch.Tensor

    def __init__(self, in_dim: int, out_dim: int, cfg: EnsembleConfig, gen: torch.Generator) -> None:
        super().__init__()
        e, h = cfg.n_members, cfg.hidden
        dims = [in_dim] + [h] * cfg.layers + [2 * out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for din, dout in zip(dims[:-1], dims[1:]):
            std = 1.0 / (2.0 * math.sqrt(din))
            self.weights.append(nn.Parameter(_trunc_normal((e, din, dout), std, gen)))
            self.biases.append(nn.Parameter(torch.zeros(e, 1, dout)))
        self.max_logvar = nn.Parameter(
            torch.full((1, out_dim), cfg.logvar_max_init), requires_grad=cfg.learn_logvar_bounds
        )
        self.min_logvar = nn.Parameter(
            torch.full((1, out_dim), cfg.logvar_min_init), requires_grad=cfg.learn_logvar_bounds
        )
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(out_dim))  # targets are standardised too, so the log-var
        self.register_buffer("out_std", torch.ones(out_dim))  # bounds are relative to each output's scale
        self.n_members = e
        self.out_dim = out_dim

    def _bound(self, logvar: torch.Tensor) -> torch.Tensor:
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        return self.min_logvar + F.softplus(logvar - self.min_logvar)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs ``[E, N, in]`` -> (mean, logvar) of the *standardised* targets, each ``[E, N, out]``."""
        h = (x - self.in_mean) / self.in_std
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = F.silu(h)
        mean, logvar = h.split(self.out_dim, dim=-1)
        return mean, self._bound(logvar)

    def forward_member(self, x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs ``[N, in]`` through member ``m`` only -> standardised (mean, logvar) ``[N, out]``."""
        h = (x - self.in_mean) / self.in_std
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.addmm(b[m], h, w[m])
            if i < last:
                F.silu(h, inplace=True)
        mean, logvar = h.split(self.out_dim, dim=-1)
        return mean, self._bound(logvar)

    def member_modules(self) -> list[nn.Module]:
        """Separate plain ``nn.Sequential`` copies of each member (normalisation folded out; for tests/benchmarks)."""
        mods: list[nn.Module] = []
        for m in range(self.n_members):
            layers: list[nn.Module] = []
            for i, (w, b) in enumerate(zip(self.weights, self.biases)):
                lin = nn.Linear(w.shape[1], w.shape[2])
                with torch.no_grad():
                    lin.weight.copy_(w[m].T)
                    lin.bias.copy_(b[m, 0])
                layers.append(lin)
                if i < len(self.weights) - 1:
                    layers.append(nn.SiLU())
            mods.append(nn.Sequential(*layers))
        return mods


class DynamicsEnsemble:
    """Fit on real transitions, predict ``next_obs`` and reward; see the module docstring."""

    def __init__(
        self, obs_dim: int, act_dim: int, cfg: EnsembleConfig, seed: int = 0,
        input_columns: Sequence[int] | None = None,
    ) -> None:
        """``input_columns``: the observation columns the dynamics depend on (the robot's state; default: all).
        Every member still predicts the change of every observation column and the reward."""
        self.obs_dim, self.act_dim, self.cfg = obs_dim, act_dim, cfg
        cols = np.arange(obs_dim) if input_columns is None else np.asarray(input_columns, dtype=np.int64)
        if cols.ndim != 1 or cols.size == 0 or cols.min() < 0 or cols.max() >= obs_dim or len(set(cols)) != cols.size:
            raise ValueError(f"ensemble input_columns must be distinct observation indices in [0, {obs_dim}), "
                             f"got {list(cols)}")
        self.input_columns = cols
        self._all_columns = bool(np.array_equal(cols, np.arange(obs_dim)))  # identity: no gather needed
        gen = torch.Generator().manual_seed(seed)
        self.net = EnsembleNet(cols.size + act_dim, obs_dim + 1, cfg, gen)
        self.optim = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.elites = np.arange(cfg.n_elites)
        self.val_mse = np.full(cfg.n_members, np.inf)
        self.fitted = False
        self.n_fits = 0

    # ------------------------------------------------------------------ data
    def _inputs(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Network inputs ``[obs[:, input_columns], action]`` (float32)."""
        x = obs if self._all_columns else obs[:, self.input_columns]
        return np.concatenate([x, action], axis=1).astype(np.float32, copy=False)

    def _io(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        y = np.concatenate([batch.next_obs - batch.obs, batch.reward[:, None]], axis=1)
        return self._inputs(batch.obs, batch.action), y.astype(np.float32)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL of standardised targets ``y`` + log-var bound penalty (Chua et al. 2018, App. A.1)."""
        mean, logvar = self.net(x)
        inv_var = torch.exp(-logvar)
        nll = (((mean - y) ** 2) * inv_var + logvar).mean(dim=(1, 2)).sum()
        penalty = self.cfg.bound_penalty * (self.net.max_logvar.sum() - self.net.min_logvar.sum())
        return nll + penalty

    @torch.no_grad()
    def _val_mse(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Per-member MSE of the mean prediction against raw targets ``y`` (raw units)."""
        e = self.cfg.n_members
        mean, _ = self.net(x.unsqueeze(0).expand(e, -1, -1))
        mean = mean * self.net.out_std + self.net.out_mean
        return ((mean - y.unsqueeze(0)) ** 2).mean(dim=(1, 2)).numpy().astype(np.float64)

    @torch.no_grad()
    def _val_nll(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Per-member Gaussian NLL (without the constant) of standardised targets, mean over rows and outputs."""
        e = self.cfg.n_members
        mean, logvar = self.net(x.unsqueeze(0).expand(e, -1, -1))
        yn = (y - self.net.out_mean) / self.net.out_std
        nll = ((mean - yn.unsqueeze(0)) ** 2) * torch.exp(-logvar) + logvar
        return (0.5 * nll.mean(dim=(1, 2))).numpy().astype(np.float64)

    def _val_score(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """The held-out score early stopping minimises (``cfg.early_stop_on``)."""
        return self._val_nll(x, y) if self.cfg.early_stop_on == "nll" else self._val_mse(x, y)

    # ------------------------------------------------------------------ fit
    def fit(self, data: Batch, rng: np.random.Generator) -> FitReport:
        """Fit on ``data`` (real transitions only) with holdout early stopping; warm-starts from the last fit."""
        cfg, e = self.cfg, self.cfg.n_members
        t0 = time.perf_counter()
        x_all, y_all = self._io(data)
        n = len(x_all)
        if n < 2:
            raise ValueError(f"ensemble fit needs at least 2 transitions, got {n}")
        perm = rng.permutation(n)
        n_hold = max(1, min(int(n * cfg.holdout_ratio), cfg.holdout_cap))
        hold, train = perm[:n_hold], perm[n_hold:]
        xt, yt = torch.from_numpy(x_all[train]), torch.from_numpy(y_all[train])
        xh, yh = torch.from_numpy(x_all[hold]), torch.from_numpy(y_all[hold])
        if not (self.cfg.normalizer == "first_fit" and self.fitted):
            with torch.no_grad():
                self.net.in_mean.copy_(xt.mean(0))
                std = xt.std(0) if len(xt) > 1 else torch.ones_like(xt[0])
                self.net.in_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))
                self.net.out_mean.copy_(yt.mean(0))
                ystd = yt.std(0) if len(yt) > 1 else torch.ones_like(yt[0])
                self.net.out_std.copy_(ystd.clamp(min=1e-6))  # constant targets: (almost) no sampling noise
        ytn = (yt - self.net.out_mean) / self.net.out_std
        n_train = len(xt)
        if cfg.bootstrap:
            boot = rng.integers(0, n_train, size=(e, n_train))
        else:
            boot = np.tile(np.arange(n_train), (e, 1))
        params = list(self.net.parameters())
        best = self._val_score(xh, yh)
        best_state = [p.detach().clone() for p in params]
        since, epochs, stopped_by, loss_val = 0, 0, "max_epochs", float("nan")
        bs, n_batches = cfg.batch_size, 0
        for epoch in range(cfg.max_epochs):
            order = np.take_along_axis(boot, rng.random(boot.shape).argsort(axis=1), axis=1)
            self.net.train()
            for start in range(0, n_train, bs):
                idx = torch.from_numpy(order[:, start : start + bs])
                loss = self._loss(xt[idx], ytn[idx])
                self.optim.zero_grad(set_to_none=True)
                loss.backward()
                self.optim.step()
                n_batches += 1
            loss_val = float(loss.detach())
            if not math.isfinite(loss_val):
                raise FloatingPointError(f"ensemble training loss became {loss_val} at fit epoch {epoch}")
            epochs = epoch + 1
            cur = self._val_score(xh, yh)
            # relative improvement; NLL can be near 0 or negative, so it is measured against max(|best|, 1)
            floor = 1.0 if cfg.early_stop_on == "nll" else 1e-12
            improved = (best - cur) / np.maximum(np.abs(best), floor) > cfg.min_rel_improvement
            improved |= ~np.isfinite(best) & np.isfinite(cur)
            if improved.any():
                with torch.no_grad():
                    for snap, p in zip(best_state, params):
                        if p.shape[0] == e:  # per-member weights; shared log-var bounds are kept as trained
                            snap[improved] = p.detach()[improved]
                best = np.where(improved, cur, best)
                since = 0
            else:
                since += 1
            if since > cfg.patience:
                stopped_by = "patience"
                break
            if cfg.max_fit_batches is not None and n_batches >= cfg.max_fit_batches:
                stopped_by = "max_fit_batches"
                break
            if time.perf_counter() - t0 > cfg.max_fit_seconds:
                stopped_by = "time"
                break
        with torch.no_grad():
            for snap, p in zip(best_state, params):
                if p.shape[0] == e:
                    p.copy_(snap)
        self.val_mse = self._val_mse(xh, yh)
        self.elites = np.sort(np.argsort(self.val_mse, kind="stable")[: cfg.n_elites])
        self.fitted = True
        self.n_fits += 1
        rep = FitReport(
            epochs=epochs,
            val_mse=[float(v) for v in self.val_mse],
            elites=[int(i) for i in self.elites],
            train_loss=loss_val,
            n_train=n_train,
            n_holdout=n_hold,
            seconds=time.perf_counter() - t0,
            stopped_by=stopped_by,
        )
        log.info(
            "ensemble fit #%d: %d epochs (%s), val mse %s, elites %s",
            self.n_fits, epochs, stopped_by, np.round(self.val_mse, 5).tolist(), rep.elites,
        )
        return rep

    # ------------------------------------------------------------------ predict
    def _require_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError("the dynamics ensemble has not been fit yet: call fit() on real data before rollouts")

    @torch.inference_mode()
    def predict_all(self, obs: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every member on every row: (mean, var) ``[E, N, obs+1]`` of ``[Δobs, reward]``."""
        self._require_fitted()
        x = torch.from_numpy(self._inputs(obs, action))
        mean, logvar = self.net(x.unsqueeze(0).expand(self.cfg.n_members, -1, -1))
        std = self.net.out_std
        return (mean * std + self.net.out_mean).numpy(), (logvar.exp() * std**2).numpy()

    def uncertainty(self, obs: np.ndarray, action: np.ndarray, elites_only: bool = True) -> np.ndarray:
        """Total predictive variance per row (mean aleatoric + epistemic disagreement), summed over outputs."""
        mean, var = self.predict_all(obs, action)
        if elites_only:
            mean, var = mean[self.elites], var[self.elites]
        return (var.mean(0) + mean.var(0)).sum(-1)

    def step(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        rng: np.random.Generator,
        members: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample ``(next_obs, reward, members)``; each row uses one (random elite) member, grouped by member."""
        next_obs, reward, members, _ = self.step_with_std(obs, action, rng, members, deterministic)
        return next_obs, reward, members

    @torch.inference_mode()
    def step_with_std(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        rng: np.random.Generator,
        members: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`step` plus each row's predicted next-state standard deviation ``‖σ‖₂`` (raw units) ``[N]``.

        ``‖σ‖`` is the aleatoric spread of the member that made the row — MOPO's uncertainty (Yu et al. 2020 §4.3)
        with the sampled member instead of the max over members (which would run every member on every row).
        """
        self._require_fitted()
        n = len(obs)
        if members is None:
            members = self.elites[rng.integers(0, len(self.elites), size=n)]
        x = self._inputs(obs, action)
        order = np.argsort(members, kind="stable")
        counts = np.bincount(members, minlength=self.cfg.n_members)
        xs = torch.from_numpy(x[order])
        out = np.empty((n, self.obs_dim + 1), np.float32)
        std_out = np.empty(n, np.float32)
        start = 0
        gen = None if deterministic else torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        res = torch.empty(n, self.obs_dim + 1)
        std_rows = torch.empty(n)
        obs_scale = self.net.out_std[: self.obs_dim]
        for m in np.flatnonzero(counts):
            end = start + int(counts[m])
            mean, logvar = self.net.forward_member(xs[start:end], int(m))
            std = logvar.mul_(0.5).exp_()
            std_rows[start:end] = torch.linalg.vector_norm(std[:, : self.obs_dim] * obs_scale, dim=1)
            if gen is not None:
                noise = torch.randn(mean.shape, generator=gen)
                mean = torch.addcmul(mean, std, noise)
            res[start:end] = mean
            start = end
        res.mul_(self.net.out_std).add_(self.net.out_mean)
        out[order] = res.numpy()
        std_out[order] = std_rows.numpy()
        next_obs = obs + out[:, : self.obs_dim]
        return next_obs.astype(np.float32, copy=False), out[:, self.obs_dim], members, std_out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "optim": self.optim.state_dict(),
            "elites": self.elites.copy(),
            "val_mse": self.val_mse.copy(),
            "fitted": self.fitted,
            "n_fits": self.n_fits,
            "dims": (self.obs_dim, self.act_dim),
            "input_columns": self.input_columns.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["dims"]) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"ensemble checkpoint has obs/action dims {tuple(state['dims'])}, "
                f"expected {(self.obs_dim, self.act_dim)}"
            )
        cols = state.get("input_columns", list(range(self.obs_dim)))  # older checkpoints: all columns
        if list(cols) != self.input_columns.tolist():
            raise ValueError(f"ensemble checkpoint reads observation columns {list(cols)} as inputs, this ensemble "
                             f"{self.input_columns.tolist()} (model_inputs differs)")
        self.net.load_state_dict(state["net"])
        self.optim.load_state_dict(state["optim"])
        self.elites = np.asarray(state["elites"])
        self.val_mse = np.asarray(state["val_mse"])
        self.fitted = bool(state["fitted"])
        self.n_fits = int(state["n_fits"])
