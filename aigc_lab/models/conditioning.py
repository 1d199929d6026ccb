"""The class embeddings the conditional models share, and how a reader names a class (``--label``).

The checks of labels themselves live with the other data conventions, in :mod:`aigc_lab.images`."""

from __future__ import annotations

import math

from torch import Tensor, nn


def resolve_label(label: int | str, classes: list[str]) -> int:
    """The class index a reader means by ``label``, given the dataset's class names.

    Accepted forms (the command line's ``--label``):

    * an index: ``3`` or ``"3"`` when the class names are not themselves numbers;
    * a class name: ``"3"`` for digits, ``"red triangle"`` for ``shapes``;
    * attributes as ``KEY=VALUE`` pairs separated by commas, e.g. ``"shape=triangle,colour=red"``:
      the class whose name consists of exactly these values, in any order. The keys only make
      the command readable; the values must name the class's parts.

    Raises ``ValueError`` naming the known classes when nothing, or more than one class, matches.
    """
    if not classes:
        raise ValueError("the dataset has no class names to choose a label from")
    if isinstance(label, bool):
        raise ValueError(f"a label must be a class index or name, got {label!r}")
    if isinstance(label, int):
        index = label
    else:
        text = " ".join(str(label).split())
        if text in classes:
            return classes.index(text)
        lowered = [c.lower() for c in classes]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        if "=" in text:
            values = []
            for pair in text.split(","):
                key, sep, value = pair.partition("=")
                if not sep or not key.strip() or not value.strip():
                    raise ValueError(f"attributes must be given as KEY=VALUE pairs separated by commas, e.g. shape=triangle,colour=red; got {label!r}")
                values.append(value.strip().lower())
            matches = [k for k, c in enumerate(lowered) if sorted(c.split()) == sorted(values)]
            if len(matches) == 1:
                return matches[0]
            raise ValueError(f"no class consists of exactly {values}; known classes: {', '.join(classes)}")
        try:
            index = int(text)
        except ValueError:
            raise ValueError(f"unknown label {label!r}; known classes: {', '.join(classes)} (or an index 0-{len(classes) - 1})") from None
    if not 0 <= index < len(classes):
        raise ValueError(f"a label index must lie in [0, {len(classes) - 1}], got {index}")
    return index


class FactorisedEmbedding(nn.Module):
    r"""A class embedding that is the sum of one embedding per attribute, :math:`e(y) = \sum_j e_j(y_j)`.

    Class ``k`` of a dataset whose classes are all combinations of attributes with ``factors =
    (n_1, ..., n_m)`` values, numbered in mixed radix (the last attribute fastest), has the attribute
    values :math:`y_j = \lfloor k / (n_{j+1} \cdots n_m) \rfloor \bmod n_j`. For ``shapes``,
    ``factors = (5, 6)``: shape ``k // 6`` and colour ``k % 6``. A plain :class:`torch.nn.Embedding`
    learns each of the 30 (shape, colour) vectors from that class's images alone; this one learns
    the "triangle" vector from the triangles of every colour, with ``sum(factors)`` vectors instead
    of ``prod(factors)``. It can draw combinations it has never seen, and it cannot give one
    combination a look of its own: the embedding is additive by construction.
    """

    def __init__(self, factors: tuple[int, ...], dim: int):
        super().__init__()
        self.factors = tuple(factors)
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in self.factors)
        # stride of attribute j: the product of the sizes after it (the last attribute changes fastest)
        self.strides = tuple(math.prod(self.factors[j + 1 :]) for j in range(len(self.factors)))

    @property
    def num_embeddings(self) -> int:
        return math.prod(self.factors)

    def attributes(self, labels: Tensor) -> list[Tensor]:
        """The attribute values ``y_j`` of each class index, one ``(N,)`` tensor per attribute."""
        return [(labels // stride) % n for stride, n in zip(self.strides, self.factors, strict=True)]

    def forward(self, labels: Tensor) -> Tensor:
        return sum(table(y) for table, y in zip(self.tables, self.attributes(labels), strict=True))  # (N, dim)


def label_embedding(num_classes: int, dim: int, label_factors: tuple[int, ...] | None = None) -> nn.Module:
    """One embedding per class (:class:`torch.nn.Embedding`), or, given ``label_factors``, a :class:`FactorisedEmbedding`."""
    return nn.Embedding(num_classes, dim) if label_factors is None else FactorisedEmbedding(label_factors, dim)
