r"""Chapter 3's diffusion model (DDPM) with DDIM sampling, and chapter 4's classifier-free guidance.

**Forward process.** A fixed Markov chain adds a little Gaussian noise at each of :math:`T` steps
(Ho, Jain & Abbeel, 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239):

.. math::

    q(x_t \mid x_{t-1}) = \mathcal{N}\big(\sqrt{1 - \beta_t}\,x_{t-1},\ \beta_t I\big), \qquad
    q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\,x_0,\ (1 - \bar\alpha_t) I\big), \qquad
    \bar\alpha_t = \prod_{s \le t} (1 - \beta_s),

so :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon` with
:math:`\epsilon \sim \mathcal{N}(0, I)` in one step (:meth:`DDPM.q_sample`; :meth:`DDPM.forward_iterate`
takes the :math:`t` small steps instead, and gives the same distribution). The schedule
:math:`\beta_1..\beta_T` is ``"linear"`` (Ho et al.: :math:`10^{-4}` to :math:`0.02` for :math:`T = 1000`)
or ``"cosine"`` (Nichol & Dhariwal, 2021, "Improved Denoising Diffusion Probabilistic Models",
arXiv:2102.09672: :math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s}\frac{\pi}{2}\big)`,
:math:`s = 0.008`), see :func:`beta_schedule`.

**Training.** A network :math:`\epsilon_\theta(x_t, t)` (:class:`aigc_lab.models.unet.UNet`) learns to
tell the noise from the image, with Ho et al.'s "simple" loss, a reweighted variational bound:

.. math::

    L_\text{simple} = \mathbb{E}_{x_0,\ t \sim \mathcal{U}\{1..T\},\ \epsilon \sim \mathcal{N}(0, I)}
    \big\Vert \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon,\ t) \big\Vert^2

(:meth:`DDPM.loss`, averaged over pixels as well as images).

**Sampling.** Start from :math:`x_T \sim \mathcal{N}(0, I)` and walk back. Each step predicts
:math:`\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta) / \sqrt{\bar\alpha_t}` (for a
:math:`v`-network, :math:`\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1 - \bar\alpha_t}\,v_\theta`, see
:class:`DDPM`'s ``prediction``), clipped to :math:`[-1, 1]` (the data's range), then

* ``method="ddpm"`` (ancestral sampling): draws :math:`x_{t-1}` from the Gaussian posterior
  :math:`q(x_{t-1} \mid x_t, \hat x_0) = \mathcal{N}(\tilde\mu_t, \tilde\beta_t I)`,
  :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\hat x_0 + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t`,
  :math:`\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\beta_t`;
* ``method="ddim"`` (Song, Meng & Ermon, 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502):
  :math:`x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}\,\hat\epsilon + \sigma_t z`,
  :math:`\sigma_t = \eta\sqrt{\tilde\beta_t}`: deterministic for :math:`\eta = 0`, the same as
  ``"ddpm"`` for :math:`\eta = 1`.

With ``steps < T`` both walk an evenly spaced subsequence :math:`\tau_1 < \dots < \tau_S` of the
steps ("respacing", Nichol & Dhariwal, 2021), with :math:`\bar\alpha_{\tau_{i-1}}` in place of
:math:`\bar\alpha_{t-1}` and :math:`\beta = 1 - \bar\alpha_{\tau_i} / \bar\alpha_{\tau_{i-1}}`: fewer
network calls for a small loss of quality (the table in chapter 3).

**Classifier-free guidance** (Ho & Salimans, 2022, "Classifier-Free Diffusion Guidance",
arXiv:2207.12598). With ``num_classes = K > 0`` the network also takes a label; while training, a
label is replaced by the null label :math:`\varnothing` (index :math:`K`) with probability
``p_uncond``, so one network learns both :math:`\epsilon_\theta(x_t, t, y)` and
:math:`\epsilon_\theta(x_t, t, \varnothing)`. Sampling with guidance weight :math:`w` uses

.. math::

    \tilde\epsilon = (1 + w)\,\epsilon_\theta(x_t, t, y) - w\,\epsilon_\theta(x_t, t, \varnothing),

the convention of Ho & Salimans: :math:`w = 0` is the plain conditional model, :math:`w > 0` pushes
samples towards what makes them recognisably :math:`y` (at a cost in diversity), :math:`w = -1` is
the unconditional model. (Other papers write :math:`s = 1 + w`.) On the digits (1500 steps,
``p_uncond=0.1``, DDIM with 50 steps, 1000 samples), the share of samples a classifier assigns
to their label and the Frechet distance: :math:`w = 0`: 92.2 %, 13.4; :math:`w = 1`: 99.4 %, 12.5;
:math:`w = 3`: 100 %, 19.3, the classic trade of diversity for fidelity.

Time steps in the code are 0-based: ``t = 0 .. T-1`` is the paper's :math:`t = 1 .. T`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lab.images import check_images, to_model_range, to_unit_range
from aigc_lab.images import check_labels
from aigc_lab.models.unet import UNet, check_image_shape
from aigc_lab.contract import StepContext, TrainableModel, inference

SCHEDULES = ("linear", "cosine")
METHODS = ("ddpm", "ddim")



def beta_schedule(kind: str, timesteps: int) -> Tensor:
    r"""The noise schedule :math:`\beta_1..\beta_T` as a float64 tensor of length ``timesteps``.

    ``"linear"``: :math:`\beta_t` evenly from :math:`10^{-4}` to :math:`0.02` (Ho et al., 2020), both
    scaled by :math:`1000/T` so that other :math:`T` keep the same overall amount of noise.
    ``"cosine"``: :math:`\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}` with
    :math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s}\frac{\pi}{2}\big)`,
    :math:`s = 0.008`, clipped at 0.999 (Nichol & Dhariwal, 2021); it destroys the image more
    slowly at first, which helps small images, where the linear schedule is nearly pure noise
    long before :math:`T`.
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
    if kind == "linear":
        scale = 1000 / timesteps
        return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), timesteps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        alphas_cumprod = f / f[0]
        return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(max=0.999)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")


def _noise(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise on ``like``'s device; drawn on the CPU when a generator is given, so a seed gives the same numbers on any device."""
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


PREDICTIONS = ("eps", "v")


class DDPM(TrainableModel):
    r"""Denoising diffusion probabilistic model with a U-Net, DDPM and DDIM sampling, and classifier-free guidance.

    Trains :math:`L_\text{simple} = \Vert \epsilon - \epsilon_\theta(x_t, t[, y]) \Vert^2` (logged as
    ``loss``); see the module docstring for the formulas.

    Args:
        image_shape: ``(C, H, W)``, ``H == W`` a power of two >= 8.
        base_channels, channel_mults, num_res_blocks, attention, dropout: the
            :class:`~aigc_lab.models.unet.UNet`'s widths and depth.
        timesteps: :math:`T`, the number of noising steps.
        schedule: ``"cosine"`` or ``"linear"`` (:func:`beta_schedule`).
        num_classes: 0 for an unconditional model; ``K > 0`` for a conditional model with
            classifier-free guidance (labels ``0..K-1``, null label ``K``).
        p_uncond: the probability that a training label is replaced by the null label
            (conditional models only; 0 gives a purely conditional model that cannot be guided).
        lr: Adam's learning rate.
        ema_decay: the decay of an exponential moving average of the weights, used for
            sampling (0 turns it off); it warms up as :math:`\min(d, (1 + k)/(10 + k))` at step
            :math:`k` so that short runs are not dominated by the random initial weights. The
            average is part of the ``state_dict``, so checkpoints and resumed runs keep it.
        sample_steps: the number of steps :meth:`sample` takes when not told (``steps=None``).
        prediction: what the network outputs. ``"eps"`` (the default): the noise
            :math:`\epsilon`, trained with :math:`L_\text{simple}`. ``"v"``: the velocity
            :math:`v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1 - \bar\alpha_t}\,x_0` of Salimans & Ho
            (2022, "Progressive Distillation for Fast Sampling of Diffusion Models", arXiv:2202.00512),
            trained with :math:`\Vert v - v_\theta \Vert^2`. As :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon`,
            the sampler reads both off :math:`v` directly (Salimans & Ho, section 4):
            :math:`\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1 - \bar\alpha_t}\,v_\theta` and
            :math:`\hat\epsilon = \sqrt{\bar\alpha_t}\,v_\theta + \sqrt{1 - \bar\alpha_t}\,x_t`
            (:meth:`guided_eps`). Near :math:`t = T` an :math:`\epsilon`-network's estimate of :math:`x_0`
            divides its small errors by :math:`\sqrt{\bar\alpha_t} \approx 0`, and those steps set an
            image's overall colour; a :math:`v`-network predicts :math:`x_0` directly there. (Going from
            :math:`v` to :math:`x_0` through :math:`\hat\epsilon` would divide float32 rounding by
            :math:`\sqrt{\bar\alpha_T}`: about :math:`10^{-3}` off at :math:`t = T` with the cosine schedule
            and :math:`T = 1000`, :math:`\bar\alpha_T \approx 2 \cdot 10^{-9}`, against :math:`10^{-7}` for
            the direct formula.) Stored in ``hparams`` only when ``"v"``.
            On ``shapes`` (16 x 16, 1,000 steps, DDIM 50, :math:`w = 1`) the :math:`\epsilon`-model's
            estimates of :math:`x_0` at :math:`t = 950` averaged -0.44 against -0.75 for the data
            (too bright), and it drew 10.8% of the asked-for shapes and colours; with ``"v"``, 46.7%
            (one side run, 300 samples).

    Defaults chosen on the digits (Frechet distance of 1000 samples to the test split,
    :func:`aigc_lab.metrics.frechet_distance_to_test`; class mixture 16.97, real data 9.48):
    1500 steps of 64 images (about 210 CPU-seconds on one core, 0.6 M parameters), then DDIM with
    50 steps: the cosine schedule 14.7 against 16.9 for the linear one; sampling with the
    averaged weights 14.7 against 16.7 with the trained ones (linear schedule: 16.9 against 26.8).
    The samplers on that model (CPU-seconds for 1000 images on one core in brackets; one seed,
    so differences below about 1 are noise):

    ======  ===========  ===========  ===========  ===========  ============  =============
    steps   10           20           50           100          250           1000
    ======  ===========  ===========  ===========  ===========  ============  =============
    DDPM                 13.8 (18 s)  14.9 (46 s)  12.8 (82 s)  11.8 (214 s)  12.4 (~850 s)
    DDIM    16.8 (9 s)   15.2 (19 s)  14.7 (46 s)  14.5 (91 s)
    ======  ===========  ===========  ===========  ===========  ============  =============

    Ancestral DDPM gains from more steps up to about 250; deterministic DDIM flattens out early
    but degrades more gracefully at 10-20 steps; ``sample_steps=100`` with DDPM is the default.
    """

    name = "ddpm"
    default_steps = 1500  # batch size 64; about 3.5 minutes on one free CPU core

    def __init__(
        self,
        image_shape=(1, 8, 8),
        base_channels: int = 32,
        channel_mults=(1, 2),
        num_res_blocks: int = 1,
        attention: bool = False,
        dropout: float = 0.0,
        timesteps: int = 1000,
        schedule: str = "cosine",
        num_classes: int = 0,
        p_uncond: float = 0.1,
        lr: float = 1e-3,
        ema_decay: float = 0.999,
        sample_steps: int = 100,
        prediction: str = "eps",
    ):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        image_shape = check_image_shape(image_shape)
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
        betas = beta_schedule(schedule, timesteps)
        if isinstance(sample_steps, bool) or not isinstance(sample_steps, int) or not 1 <= sample_steps <= timesteps:
            raise ValueError(f"sample_steps must be an integer between 1 and timesteps={timesteps}, got {sample_steps!r}")
        self.image_shape, self.num_classes, self.timesteps = (image_shape, num_classes, timesteps)
        self.net = UNet(image_shape, base_channels, tuple(channel_mults), num_res_blocks, attention, num_classes, dropout)
        # The average of the weights is a frozen copy of the network, updated after each step.
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if ema_decay > 0 else None
        # The schedule lives in float64 on the CPU (not as buffers): its products need the
        # precision, some devices (MPS) have no float64, and it is rebuilt from the hparams anyway.
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self.hparams = {
            "image_shape": list(image_shape), "base_channels": base_channels, "channel_mults": list(channel_mults),
            "num_res_blocks": num_res_blocks, "attention": attention, "dropout": dropout, "timesteps": timesteps,
            "schedule": schedule, "num_classes": num_classes, "p_uncond": p_uncond, "lr": lr, "ema_decay": ema_decay,
            "sample_steps": sample_steps,
        }  # fmt: skip
        if prediction != "eps":  # stored only when used, so runs saved before it existed load unchanged
            self.hparams["prediction"] = prediction

    # ----- the forward process -----------------------------------------------------------

    def _check_t(self, t: Tensor, n: int) -> Tensor:
        t = torch.as_tensor(t)
        if t.shape != (n,) or t.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"t must be an integer tensor of shape ({n},), got {t.dtype} {tuple(t.shape)}")
        if n and (int(t.min()) < 0 or int(t.max()) >= self.timesteps):
            raise ValueError(f"time steps must lie in [0, {self.timesteps - 1}] (0-based), got [{int(t.min())}, {int(t.max())}]")
        return t.long()

    def _per_image(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``values[t]`` shaped ``(N, 1, 1, 1)`` to broadcast over images like ``like``."""
        return values[t.cpu()].to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon`, a draw of :math:`q(x_t \mid x_0)` in one step.

        ``x0``: images in the model range ``[-1, 1]``, ``(N, C, H, W)``; ``t``: 0-based steps ``(N,)``;
        ``noise``: :math:`\epsilon`, the same shape as ``x0``.
        """
        t = self._check_t(t, len(x0))
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        abar = self._per_image(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def forward_iterate(self, x0: Tensor, t: int, *, generator: torch.Generator | None = None) -> Tensor:
        r"""Run the chain :math:`x_s = \sqrt{1 - \beta_s}\,x_{s-1} + \sqrt{\beta_s}\,\epsilon_s` for steps ``0..t``.

        The slow way to the same distribution :meth:`q_sample` draws in one step: after step
        ``t`` the mean is :math:`\prod_s \sqrt{1 - \beta_s}\,x_0 = \sqrt{\bar\alpha_t}\,x_0` and the
        variance obeys :math:`v_s = (1 - \beta_s) v_{s-1} + \beta_s`, whose solution is :math:`1 - \bar\alpha_t`.
        """
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.timesteps:
            raise ValueError(f"t must be an integer step in [0, {self.timesteps - 1}], got {t!r}")
        x = x0
        for beta in self.betas[: t + 1].tolist():
            x = math.sqrt(1 - beta) * x + math.sqrt(beta) * _noise(tuple(x0.shape), x0, generator)
        return x

    # ----- the objective -----------------------------------------------------------------

    def drop_labels(self, labels: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Classifier-free guidance's label dropout: each label becomes the null label ``num_classes`` with probability ``p_uncond``."""
        p = self.hparams["p_uncond"]
        if not p:
            return labels
        u = torch.rand(labels.shape, generator=generator).to(labels.device)  # on the CPU: seeded the same on any device
        return torch.where(u < p, torch.full_like(labels, self.num_classes), labels)

    def loss(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        *,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        use_ema: bool = False,
    ) -> Tensor:
        r""":math:`L_\text{simple}`: the mean over images and pixels of :math:`(\epsilon - \epsilon_\theta(x_t, t[, y]))^2`.

        ``x``: images in ``[0, 1]`` (mapped to ``[-1, 1]`` here); ``labels``: as given to the
        network, so label dropout (:meth:`drop_labels`) happens before, and index ``num_classes``
        (the null label) is allowed. ``t`` (0-based, ``(N,)``) and ``noise`` are drawn when not given;
        ``use_ema`` scores the averaged weights instead of the trained ones.
        """
        check_images(x, name="DDPM input", channels=self.image_shape[0], size=self.image_shape[1:])
        if self.num_classes:
            labels = check_labels(labels, len(x), self.num_classes + 1)  # + 1: the null label
            labels = labels.to(x.device)
        else:
            check_labels(labels, len(x), 0)
        x0 = to_model_range(x)
        if t is None:
            t = torch.randint(self.timesteps, (len(x),), generator=generator)  # uniform over the T steps
        t = self._check_t(t, len(x)).to(x.device)
        noise = _noise(tuple(x0.shape), x0, generator) if noise is None else noise
        net = self.ema if use_ema and self.ema is not None else self.net
        output = net(self.q_sample(x0, t, noise), t, labels)
        if self.hparams.get("prediction", "eps") == "v":
            abar = self._per_image(self.alphas_cumprod, t, x0)
            return F.mse_loss(output, abar.sqrt() * noise - (1 - abar).sqrt() * x0)  # v = sqrt(abar) eps - sqrt(1 - abar) x0
        return F.mse_loss(output, noise)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ddpm": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        x, y = batch
        labels = self.drop_labels(y.long()) if self.num_classes else None
        loss = self.loss(x, labels)
        ctx.optimize("ddpm", loss)
        self.update_ema(ctx.step)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        r""":math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta` with :math:`d = \min(\text{ema\_decay}, (1 + k)/(10 + k))` at step :math:`k`."""
        if self.ema is None:
            return
        decay = min(self.hparams["ema_decay"], (1 + step) / (10 + step))
        for averaged, current in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            averaged.lerp_(current, 1 - decay)

    # ----- sampling ----------------------------------------------------------------------

    def timestep_sequence(self, steps: int) -> list[int]:
        """The (0-based) steps a sampler with ``steps`` network calls visits, ascending: evenly spaced from ``0`` to ``T-1``."""
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be an integer between 1 and the model's timesteps T={self.timesteps}, got {steps!r}")
        if steps == 1:
            return [self.timesteps - 1]
        return torch.linspace(0, self.timesteps - 1, steps, dtype=torch.float64).round().long().tolist()

    def guided_output(self, x: Tensor, t: Tensor, labels: Tensor | None, guidance: float | None, *, use_ema: bool = True) -> Tensor:
        r"""The network's output (:math:`\epsilon`, or :math:`v` for ``prediction="v"``), guided as :math:`(1 + w)\,\epsilon_\theta(x_t, t, y) - w\,\epsilon_\theta(x_t, t, \varnothing)` when ``guidance`` :math:`= w` is not 0.

        The sampler turns it into :math:`\hat x_0` and :math:`\hat\epsilon`; :meth:`guided_eps` gives
        :math:`\hat\epsilon`. ``use_ema``: the averaged weights when the model keeps them.
        """
        net = self.ema if use_ema and self.ema is not None else self.net
        if labels is None or not guidance:
            return net(x, t, labels)
        null = torch.full_like(labels, self.num_classes)
        conditional, unconditional = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)  # one batched call
        return (1 + guidance) * conditional - guidance * unconditional

    def guided_eps(self, x: Tensor, t: Tensor, labels: Tensor | None, guidance: float | None, *, use_ema: bool = True) -> Tensor:
        r""":math:`\epsilon_\theta(x_t, t[, y])`, guided as :math:`(1 + w)\,\epsilon_\theta(x_t, t, y) - w\,\epsilon_\theta(x_t, t, \varnothing)` when ``guidance`` :math:`= w` is not 0.

        For ``prediction="v"``: :math:`\hat\epsilon = \sqrt{\bar\alpha_t}\,\tilde v + \sqrt{1 - \bar\alpha_t}\,x_t`
        of the guided :math:`\tilde v = (1 + w)\,v_\theta(x_t, t, y) - w\,v_\theta(x_t, t, \varnothing)`
        (:meth:`guided_output`). For a fixed :math:`x_t`, :math:`\hat\epsilon` (and :math:`\hat x_0`) is affine
        in :math:`v`, and the weights :math:`1 + w` and :math:`-w` sum to one, so this is the same as
        guiding the two :math:`\hat\epsilon`'s.
        """
        return self._as_eps(self.guided_output(x, t, labels, guidance, use_ema=use_ema), x, t)

    def _sqrt_abar(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\sqrt{\bar\alpha_t}` and :math:`\sqrt{1 - \bar\alpha_t}`, ``(N, 1, 1, 1)``: taken in float64, then cast (``1 - abar`` in float32 would lose most digits near ``t = 0``)."""
        return (self._per_image(self.alphas_cumprod.sqrt(), t, like), self._per_image((1 - self.alphas_cumprod).sqrt(), t, like))

    def _as_eps(self, output: Tensor, x: Tensor, t: Tensor) -> Tensor:
        r"""The network's output as :math:`\epsilon`: itself, or :math:`\sqrt{\bar\alpha_t}\,v + \sqrt{1 - \bar\alpha_t}\,x_t` for ``prediction="v"``."""
        if self.hparams.get("prediction", "eps") != "v":
            return output
        sqrt_abar, sqrt_one_minus_abar = self._sqrt_abar(t, x)
        return sqrt_abar * output + sqrt_one_minus_abar * x

    def _as_x0(self, output: Tensor, x: Tensor, t: Tensor) -> Tensor:
        r"""The network's output as :math:`\hat x_0`: :math:`(x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon) / \sqrt{\bar\alpha_t}`, or :math:`\sqrt{\bar\alpha_t}\,x_t - \sqrt{1 - \bar\alpha_t}\,v` for ``prediction="v"`` (no division)."""
        sqrt_abar, sqrt_one_minus_abar = self._sqrt_abar(t, x)
        if self.hparams.get("prediction", "eps") != "v":
            return (x - sqrt_one_minus_abar * output) / sqrt_abar
        return sqrt_abar * x - sqrt_one_minus_abar * output

    @inference
    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        method: str = "ddpm",
        guidance: float | None = None,
        eta: float = 0.0,
        noise: Tensor | None = None,
        use_ema: bool = True,
        callback: Callable[[int, Tensor, Tensor], None] | None = None,
    ) -> Tensor:
        r"""``n`` images ``(n, C, H, W)`` in ``[0, 1]``, from :math:`x_T \sim \mathcal{N}(0, I)` back to :math:`x_0`.

        Args:
            n: how many.
            labels: the class of each image (conditional models); default ``arange(n) % num_classes``,
                one of every class in turn.
            generator: seeds the starting noise and the noise of every step.
            steps: network calls, ``1..T``; default the ``sample_steps`` hparam. Fewer than ``T``
                walks an evenly spaced subsequence of the steps (:meth:`timestep_sequence`).
            method: ``"ddpm"`` (ancestral, stochastic) or ``"ddim"``.
            guidance: classifier-free guidance weight :math:`w` (conditional models trained with
                ``p_uncond > 0``); ``None`` or 0 is the plain conditional model.
            eta: DDIM's :math:`\eta` (0: deterministic; 1: the same as DDPM). Only for ``"ddim"``.
            noise: the starting :math:`x_T`, ``(n, C, H, W)``, instead of drawing it.
            use_ema: sample with the averaged weights when the model keeps them.
            callback: called as ``callback(t, x_t, x0_hat)`` at every step, before the step is
                taken (images in the model range ``[-1, 1]``), e.g. to watch the reverse process.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "ddpm" and eta != 0.0:
            raise ValueError("eta is DDIM's parameter; use method='ddim' (DDPM is DDIM with eta=1)")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        if labels is None and self.num_classes:
            labels = torch.arange(n) % self.num_classes
        device = next(self.net.parameters()).device
        labels = check_labels(labels, n, self.num_classes)
        labels = None if labels is None else labels.to(device)
        if guidance is not None:
            if not self.num_classes:
                raise ValueError("guidance needs a conditional model (num_classes > 0)")
            if guidance and not self.hparams["p_uncond"]:
                raise ValueError("this model was trained with p_uncond=0, so it has no unconditional prediction to guide with")
            if not math.isfinite(guidance):
                raise ValueError(f"guidance must be a finite number, got {guidance}")
        ts = self.timestep_sequence(self.hparams["sample_steps"] if steps is None else steps)
        shape = (n, *self.image_shape)
        if noise is None:
            x = _noise(shape, torch.empty((), device=device), generator)
        else:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
            x = noise.to(device=device, dtype=torch.float32)
        abar = self.alphas_cumprod.tolist()
        for i in reversed(range(len(ts))):
            t, a_t = ts[i], abar[ts[i]]
            a_prev = abar[ts[i - 1]] if i > 0 else 1.0  # "x_{-1}" is the clean image
            t_batch = torch.full((n,), t, device=device, dtype=torch.long)
            output = self.guided_output(x, t_batch, labels, guidance, use_ema=use_ema)  # eps or v
            # Clipping x0 to the data's range keeps the early, noisy predictions from overshooting.
            x0 = self._as_x0(output, x, t_batch).clamp(-1, 1)
            if callback is not None:
                callback(t, x, x0)
            beta = 1 - a_t / a_prev  # of the (respaced) step tau_i -> tau_{i-1}
            variance = (1 - a_prev) / (1 - a_t) * beta  # tilde beta, the posterior's variance; 0 at the last step
            if method == "ddpm":
                x = math.sqrt(a_prev) * beta / (1 - a_t) * x0 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x
                sigma = math.sqrt(variance)
            else:
                eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)  # the noise that the clipped x0 implies
                sigma = eta * math.sqrt(variance)
                x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * _noise(shape, x, generator)
        return to_unit_range(x)

    # ----- measuring ---------------------------------------------------------------------

    @inference
    def evaluate(self, dataset, *, seed: int = 0) -> dict[str, float]:
        r"""``{"loss": ...}``: :math:`L_\text{simple}` on ``dataset`` at seeded :math:`t` and :math:`\epsilon` (with the sampling weights).

        Not a likelihood (DDPM's bound needs all :math:`T` terms); compared with the training
        loss it shows overfitting. Conditional models are scored with the true labels.
        """
        generator = torch.Generator().manual_seed(seed)
        device = next(self.net.parameters()).device
        images = dataset.images.to(device)
        labels = dataset.labels.long().to(device) if self.num_classes else None
        total = 0.0
        for start in range(0, len(images), 500):
            part = slice(start, start + 500)
            loss = self.loss(images[part], None if labels is None else labels[part], generator=generator, use_ema=True)
            total += float(loss) * len(images[part])
        return {"loss": total / len(images)}
