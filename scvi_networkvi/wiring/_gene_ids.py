"""Which gene ids the features carry: read from ``var_names`` or a var column, recognised, matched to annotations.

Rules (documented in :func:`detect_gene_ids`):

* candidate sources, in this order: ``var_names``, then the var columns of :data:`GENE_ID_COLUMNS` that exist;
* each id is recognised as ENSEMBL (``ENSG...`` human, ``ENSMUSG...`` mouse, other ``ENS*G`` prefixes of unknown
  species; version suffixes such as ``.15`` stripped), an Entrez id (digits; not when the values are just the
  positions ``0..n-1``), or a gene symbol (human style ``CD3E``, mouse style ``Cd3e``); genomic regions
  (``chr1-100-200``) and anything else are not gene ids;
* antibody names of a protein modality's ``var_names`` go through :func:`antibody_to_symbols`;
* with annotation keys, the source whose ids match the most keys wins; without, the one with the most recognised
  ids; ties go to the earlier source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._annotations import normalize_gene_id
from ._compile import parse_feature_gene_ids
from ._id_types import _CONTROL, antibody_to_symbols, classify_gene_id

#: Where gene ids are looked for besides ``var_names``, in order of preference: the project's own column
#: (``gene_stable_id``), ENSEMBL id columns (scanpy's ``read_10x_*`` writes ``gene_ids``), symbol columns (scanpy's
#: ``var_names="gene_ids"`` layout writes ``gene_symbols``; CELLxGENE uses ``feature_name``), then Entrez columns.
GENE_ID_COLUMNS = (
    "gene_stable_id",
    "gene_ids",
    "gene_id",
    "ensembl_id",
    "ensembl_gene_id",
    "ensembl",
    "gene_symbols",
    "gene_symbol",
    "symbol",
    "gene_name",
    "feature_name",
    "entrez_id",
    "entrez",
)
#: The source name of the feature names themselves (``gene_id_key="var_names"``).
VAR_NAMES = "var_names"
SPECIES = ("human", "mouse")
#: Share of a modality's features that must match the annotations (see :func:`detect_gene_ids`).
MIN_MATCHED = 0.2
#: A source is of mixed species when its less common species has at least this share of its species-typed ids.
MIXED_SHARE = 0.1

ID_TYPE_NAMES = {"ensembl": "ENSEMBL", "symbol": "gene symbol", "entrez": "Entrez", "antibody": "antibody name"}


# ---- one source ----------------------------------------------------------------------------------------------------
@dataclass
class GeneIdSource:
    """The gene ids one source (``var_names`` or a var column) gives a modality's features."""

    source: str
    ids: list[list[str]] = field(repr=False)
    id_type: str | None
    species: str | None
    n_features: int
    n_recognised: int
    n_human: int = 0
    n_mouse: int = 0
    n_matched: int | None = None
    unmapped: list[str] = field(default_factory=list, repr=False)
    translated: int = 0

    @property
    def where(self) -> str:
        """``var_names`` or ``var['column']``."""
        return VAR_NAMES if self.source == VAR_NAMES else f"var[{self.source!r}]"

    @property
    def recognised(self) -> float:
        """Share of the features whose id is of a known type."""
        return self.n_recognised / max(self.n_features, 1)

    @property
    def matched(self) -> float | None:
        """Share of the features found in the annotations (``None`` when no annotations were given)."""
        return None if self.n_matched is None else self.n_matched / max(self.n_features, 1)

    @property
    def mixed(self) -> bool:
        """Whether human and mouse ids both hold a real share of the species-typed ids."""
        typed = self.n_human + self.n_mouse
        return typed > 0 and min(self.n_human, self.n_mouse) >= max(2, MIXED_SHARE * typed)

    def describe(self) -> str:
        """One-line account of the choice, for the log and for error messages."""
        kind = ID_TYPE_NAMES.get(self.id_type or "", "no recognised gene ids")
        if self.id_type == "antibody":
            kind = "antibody names -> gene symbols"
            if self.translated:
                kind += f" -> ENSEMBL for {self.translated} via the RNA modality's var"
        species = "mixed human + mouse" if self.mixed else self.species or "species unknown"
        text = f"{self.where} ({kind}, {species}; {self.recognised:.0%} of {self.n_features} features with an id"
        if self.n_matched is not None:
            text += f", {self.matched:.0%} in the annotations"
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        """JSON types only: what is stored with a model (``NETWORKVI.gene_ids_``)."""
        return {
            "source": self.source,
            "id_type": self.id_type,
            "species": self.species,
            "n_features": self.n_features,
            "share_with_id": round(self.recognised, 4),
            "share_matched": None if self.matched is None else round(self.matched, 4),
        }


def _values(var_names: Sequence[str], var: pd.DataFrame, source: str) -> list[Any]:
    return [str(v) for v in var_names] if source == VAR_NAMES else var[source].tolist()


def _is_positions(values: list[Any]) -> bool:
    """Values that are just ``0..n-1`` (an AnnData without names), not Entrez ids."""
    try:
        numbers = np.asarray([int(str(v)) for v in values])
    except ValueError:
        return False
    return len(numbers) > 1 and np.array_equal(numbers, np.arange(len(numbers)))


def read_source(
    var_names: Sequence[str],
    var: pd.DataFrame,
    source: str,
    *,
    protein: bool = False,
    species: str | None = None,
    antibody_species: str | None = None,
    keys: set[str] | None = None,
    known_symbols: set[str] | None = None,
    translate: Mapping[str, str] | None = None,
) -> GeneIdSource:
    """The gene ids of one source, recognised (and counted against annotation ``keys`` when given).

    ``protein``: ``var_names`` are antibody names (:func:`antibody_to_symbols` in the style of ``antibody_species``,
    verified against ``known_symbols`` and ``keys``, then each symbol replaced by its id in ``translate`` where it has
    one). ``species`` (the user's): ENSEMBL ids of the other species are dropped.
    """
    values = _values(var_names, var, source)
    antibody = protein and source == VAR_NAMES
    unmapped: list[str] = []
    if antibody:
        known = None if known_symbols is None and keys is None else (known_symbols or set()) | (keys or set())
        ids = []
        for value in values:
            symbols = antibody_to_symbols(value, antibody_species or species or "human", known)
            if not symbols and not _CONTROL.search(str(value)):
                unmapped.append(str(value))
            ids.append(list(dict.fromkeys((translate or {}).get(symbol, symbol) for symbol in symbols)))
    else:
        ids = parse_feature_gene_ids(values)
        if _is_positions(values):
            ids = [[] for _ in ids]
    types: Counter = Counter()
    n_recognised = n_human = n_mouse = 0
    kept = []
    for feature in ids:
        classes = [classify_gene_id(i) for i in feature]
        if species is not None:  # drop ENSEMBL ids of the other species
            pairs = [
                (i, c)
                for i, c in zip(feature, classes, strict=True)
                if not (c[0] == "ensembl" and c[1] not in (None, species))
            ]
            feature, classes = [p[0] for p in pairs], [p[1] for p in pairs]
        kept.append(feature)
        recognised = [c for c in classes if c[0] is not None]
        if recognised:
            n_recognised += 1
            types[recognised[0][0]] += 1
            found = {c[1] for c in recognised}
            n_human += "human" in found
            n_mouse += "mouse" in found
    id_type = types.most_common(1)[0][0] if types else None
    if antibody and id_type is not None:
        id_type = "antibody"
    detected = None
    if n_human or n_mouse:
        detected = "human" if n_human >= n_mouse else "mouse"
    if antibody:
        detected = antibody_species  # antibody names tell no species; they follow the other modalities
    result = GeneIdSource(
        source=source,
        ids=kept,
        id_type=id_type,
        species=species or detected,
        n_features=len(values),
        n_recognised=n_recognised,
        n_human=n_human,
        n_mouse=n_mouse,
        unmapped=unmapped,
        translated=sum(any(classify_gene_id(i)[0] == "ensembl" for i in f) for f in kept) if antibody else 0,
    )
    if keys is not None:
        result.n_matched = sum(any(i in keys for i in feature) for feature in kept)
    return result


def candidate_sources(var: pd.DataFrame) -> list[str]:
    """``var_names`` and the var columns of :data:`GENE_ID_COLUMNS` that the table has, in that order."""
    return [VAR_NAMES, *(column for column in GENE_ID_COLUMNS if column in var.columns)]


def key_kind(keys: Iterable[str]) -> tuple[str | None, str | None]:
    """The most common ``(id_type, species)`` of annotation keys."""
    counts = Counter(classify_gene_id(k) for k in keys)
    counts.pop((None, None), None)
    return counts.most_common(1)[0][0] if counts else (None, None)


def best_source(found: Sequence[GeneIdSource]) -> GeneIdSource:
    """The source with the most annotation matches (when counted), then the most recognised ids, then the first."""

    def score(item: tuple[int, GeneIdSource]):
        order, source = item
        return (source.n_matched or 0, source.n_recognised, -order)

    return max(enumerate(found), key=score)[1]


def check_choice(
    modality: str,
    chosen: GeneIdSource,
    found: Sequence[GeneIdSource],
    values: Mapping[str, Sequence[Any]],
    *,
    caller: str,
    species: str | None,
    annotation_kind: tuple[str | None, str | None] = (None, None),
    explicit: bool = False,
) -> bool:
    """Raise a ValueError when a modality's chosen ids are ambiguous or do not match the annotations.

    Returns whether the choice is accepted only because the ids are of the annotations' own kind while few of them
    are annotated (a sparse annotation file, such as the tutorial's subsampled one): the caller warns.
    """
    fix = f"pass gene_id_key= (a var column, or 'var_names') to {caller}"
    if chosen.mixed and species is None:
        raise ValueError(
            f"Modality {modality!r} has both human and mouse gene ids in {chosen.where} ({chosen.n_human} "
            f"features with human, {chosen.n_mouse} with mouse ids): pass species='human' or species='mouse' to "
            f"{caller} to keep one species' ids."
        )
    if chosen.matched is None or chosen.matched >= MIN_MATCHED:
        return False
    if (
        chosen.id_type is not None
        and (chosen.id_type, chosen.species) == annotation_kind
        and chosen.recognised >= MIN_MATCHED
    ):
        return True
    seen = "; ".join(f"{s.describe()}, e.g. {[str(v) for v in list(values[s.source])[:3]]}" for s in found)
    if not any(s.recognised >= MIN_MATCHED for s in found):
        raise ValueError(
            f"Found no gene ids of a known type (ENSEMBL, gene symbol, Entrez) for modality {modality!r}. "
            f"Looked in {seen}. Give the features' gene ids in a var column and {fix}, or use encoder='dense'."
        )
    kind = ID_TYPE_NAMES.get(annotation_kind[0] or "", "unrecognised")
    what = "the given column" if explicit else "any of its sources"
    raise ValueError(
        f"Fewer than {MIN_MATCHED:.0%} of the features of modality {modality!r} match the annotations' "
        f"gene ids in {what}: no source has an annotation for enough features ({seen}). The annotations are keyed "
        f"by {kind} ids ({annotation_kind[1] or 'species unknown'}): give the features' ids in that scheme and {fix}, "
        "or pass annotations keyed like the features' ids."
    )


_SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "symbol", "gene_name", "feature_name")


def symbols_of(var_names: Sequence[str], var: pd.DataFrame) -> set[str]:
    """The gene symbols among ``var_names`` and the symbol columns of a var table."""
    values = [str(v) for v in var_names]
    for column in _SYMBOL_COLUMNS:
        if column in var.columns:
            values += [str(v) for v in var[column].dropna()]
    return {v for v in values if classify_gene_id(v)[0] == "symbol"}


def symbol_to_ensembl(var_names: Sequence[str], var: pd.DataFrame) -> dict[str, str]:
    """Symbol -> ENSEMBL id from a var table that has both (scanpy's layout: symbols as names, ids in ``gene_ids``)."""
    symbols = [VAR_NAMES, *(c for c in _SYMBOL_COLUMNS if c in var.columns)]
    ensembl = [VAR_NAMES, *(c for c in GENE_ID_COLUMNS if c in var.columns)]
    columns = {source: [str(v) for v in _values(var_names, var, source)] for source in {*symbols, *ensembl}}
    table: dict[str, str] = {}
    for row in range(len(var_names)):
        symbol = next((columns[c][row] for c in symbols if classify_gene_id(columns[c][row])[0] == "symbol"), None)
        gene = next((columns[c][row] for c in ensembl if classify_gene_id(columns[c][row])[0] == "ensembl"), None)
        if symbol is not None and gene is not None:
            table.setdefault(symbol, normalize_gene_id(gene))
    return table


@dataclass
class Detection:
    """The gene-id source chosen for each modality, what was looked at, and the species."""

    chosen: dict[str, GeneIdSource]
    found: dict[str, list[GeneIdSource]]
    species: str | None
    sparse: list[str]  # modalities accepted as sparsely annotated (ids of the annotations' kind, few annotated)

    def summary(self) -> str:
        """One line: each modality's source, id type, species and shares."""
        return "; ".join(f"{modality!r} from {source.describe()}" for modality, source in self.chosen.items())


def detect_gene_ids(
    modalities: Mapping[str, tuple[str, Sequence[str], pd.DataFrame]],
    *,
    gene_id_key: str | Mapping[str, str] | None = None,
    species: str | None = None,
    keys: set[str] | None = None,
    caller: str = "NETWORKVI.setup_mudata",
    strict: bool = True,
) -> Detection:
    """Choose, for each modality, where its features' gene ids are read from.

    Parameters
    ----------
    modalities
        Modality name -> ``(role, var_names, var)``; role ``"rna"``, ``"protein"`` or ``"atac"``.
    gene_id_key
        A var column (or ``"var_names"``) for every modality, or a mapping role -> column; a role left out is
        detected. ``None``: detect all.
    species
        ``"human"``, ``"mouse"`` or ``None`` (detect). Given: ENSEMBL ids of the other species are dropped and mixed
        species are no error.
    keys
        Gene ids of the annotations (the GAF column the wiring reads); the source matching the most wins.
    caller
        The function the user called, named in the errors with the argument to pass.
    strict
        Raise on ambiguous or unmatched ids (the GO encoder needs them); ``False``: return what is best.

    Notes
    -----
    Candidates: ``var_names``, then the var columns of :data:`GENE_ID_COLUMNS` that exist (protein ``var_names``
    read as antibody names, :func:`antibody_to_symbols`). With ``keys`` the candidate whose ids match the most keys
    wins, else the one with the most ids of a known type; ties go to the earlier candidate. Errors (``strict``): mixed
    human and mouse ids (the less common species on at least 10 % of the species-typed features, ``species=`` not
    given); fewer than 20 % of the features matched to the annotations, unless the ids are of the annotations' own
    type and species (a sparse annotation file such as the tutorial's subsampled one: accepted, listed in
    ``Detection.sparse``); no source with ids of a known type on 20 % of the features.
    """
    if species not in (None, *SPECIES):
        raise ValueError(f"species must be 'human', 'mouse' or None (detect), got {species!r}.")
    if isinstance(gene_id_key, Mapping):
        unknown = sorted(set(gene_id_key) - {role for role, _, _ in modalities.values()})
        if unknown:
            roles = sorted({role for role, _, _ in modalities.values()})
            raise ValueError(f"gene_id_key of {caller} names roles {unknown} that are not registered (roles: {roles}).")
    annotation_kind = key_kind(keys) if keys is not None else (None, None)
    order = sorted(modalities, key=lambda m: modalities[m][0] == "protein")  # proteins last: they follow the species
    chosen: dict[str, GeneIdSource] = {}
    found: dict[str, list[GeneIdSource]] = {}
    sparse: list[str] = []
    known_symbols: set[str] = set()
    translate: dict[str, str] = {}
    for name in order:
        role, var_names, var = modalities[name]
        if role == "rna":
            known_symbols |= symbols_of(var_names, var)
            if any(m[0] == "protein" for m in modalities.values()):
                translate = {**symbol_to_ensembl(var_names, var), **translate}
    detected_species = species
    for name in order:
        role, var_names, var = modalities[name]
        given = gene_id_key.get(role) if isinstance(gene_id_key, Mapping) else gene_id_key
        if given is not None:
            if given != VAR_NAMES and given not in var.columns:
                raise ValueError(
                    f"Modality {name!r} has no var[{given!r}] with the features' gene ids (columns: "
                    f"{list(var.columns)}): pass gene_id_key= a column that has them (or 'var_names') to {caller}, "
                    "or use encoder='dense'."
                )
            sources = [given]
        else:
            sources = candidate_sources(var)
        if role == "protein" and detected_species is None:
            detected_species = _common_species(chosen.values(), caller) if strict else None
        read = [
            read_source(
                var_names,
                var,
                source,
                protein=role == "protein",
                species=species,
                antibody_species=detected_species,
                keys=keys,
                known_symbols=known_symbols or None,
                translate=translate,
            )
            for source in sources
        ]
        found[name] = read
        best = best_source(read)
        if strict:
            values = {s: _values(var_names, var, s) for s in sources}
            kind = annotation_kind
            if check_choice(
                name,
                best,
                read,
                values,
                caller=caller,
                species=species,
                annotation_kind=kind,
                explicit=given is not None,
            ):
                sparse.append(name)
        chosen[name] = best
    if strict and species is None:
        detected_species = _common_species(chosen.values(), caller)
    return Detection(chosen={m: chosen[m] for m in modalities}, found=found, species=detected_species, sparse=sparse)


def _common_species(sources: Iterable[GeneIdSource], caller: str) -> str | None:
    """The one species of the modalities' chosen ids; modalities of different species are an error."""
    named = {}
    for source in sources:
        if source.species is not None and source.id_type != "antibody":
            named.setdefault(source.species, source.where)
    if len(named) > 1:
        raise ValueError(
            f"The modalities' gene ids are of different species ({named}): pass species='human' or "
            f"species='mouse' to {caller}, or give ids of one species."
        )
    return next(iter(named), None)
