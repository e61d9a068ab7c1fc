"""What one feature name is: a gene id of some type and species, or an antibody name standing for gene symbols.

:func:`classify_gene_id` and :func:`antibody_to_symbols` read one name; ``_gene_ids`` chooses the source of a
modality's ids (``var_names`` or a var column) with them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

_ENSEMBL = re.compile(r"^(ENS[A-Z]*G)\d{11}(\.\d+)?$")
_ENSEMBL_SPECIES = {"ENSG": "human", "ENSMUSG": "mouse"}
_ENTREZ = re.compile(r"^\d{1,9}$")
_REGION = re.compile(r"^(chr)?[0-9XYMTxym]{1,2}[:_-]\d+[:_-]\d+$")
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-.@][A-Za-z0-9]+)*$|^\d+[A-Z]\d+Rik$")
_HUMAN_ORF = re.compile(r"C\d+orf\d+")
_MOUSE_STYLE = re.compile(
    r"^(?:[A-Z][a-z0-9]*[a-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*|mt-[A-Z][A-Za-z0-9]*|\d+[A-Z]\d+Rik)$"
)


@functools.lru_cache(maxsize=1 << 18)
def classify_gene_id(value: str) -> tuple[str | None, str | None]:
    """The ``(id_type, species)`` of one id.

    id type ``"ensembl"``, ``"entrez"``, ``"symbol"`` or ``None`` (not a gene id); species ``"human"``, ``"mouse"``
    or ``None`` (not told by the id).

    >>> classify_gene_id("ENSG00000141510.15"), classify_gene_id("Cd3e"), classify_gene_id("chr1-100-200")
    (('ensembl', 'human'), ('symbol', 'mouse'), (None, None))
    """
    text = str(value).strip()
    match = _ENSEMBL.match(text)
    if match:
        return "ensembl", _ENSEMBL_SPECIES.get(match.group(1))
    if _ENTREZ.match(text):
        return "entrez", None
    if len(text) > 30 or _REGION.match(text) or not _SYMBOL.match(text):
        return None, None
    if not re.search("[a-z]", _HUMAN_ORF.sub("", text)):
        return "symbol", "human"
    if _MOUSE_STYLE.match(text):
        return "symbol", "mouse"
    return "symbol", None


# ---- protein panels ------------------------------------------------------------------------------------------------
#: Decorations removed from antibody names, in turn: a trailing clone or note in brackets (``CD3 (UCHT1)``), vendor
#: and assay suffixes (``_TotalSeqB``, ``-TotalA``, ``_ADT``, ``.ADT``, ``_CITE``, ``_prot``, ``_protein``,
#: ``_antibody``) and prefixes (``ADT_``, ``anti-``, ``anti-human``).
_ANTIBODY_DECORATIONS = (
    re.compile(r"\s*[(\[][^)\]]*[)\]]\s*$"),
    re.compile(r"[-_. ]?(TotalSeq[-_]?[ABCD]?|Total[ABCD]|ADT|CITE|prot|protein|antibody|Ab)$", re.IGNORECASE),
    re.compile(r"^(ADT[-_ ]|anti[-_ ](human[-_ ]|mouse[-_ ])?)", re.IGNORECASE),
)
_CONTROL = re.compile(r"isotype|ctrl|control", re.IGNORECASE)

#: Antibody (CD) names whose human gene symbol is not the name itself. Each pair is the one the NetworkVI tutorial's
#: ENSEMBL ids give for the NeurIPS 2021 bone-marrow panel (``tests/data/bmmc_cite.h5mu``, var ``symbol`` where
#: ``symbol_source`` is not the ADT name; checked by the tests), except ``HLA-DR`` (the DR alpha chain, HLA-DRA) and
#: ``HLA-A-B-C`` (the three class I genes). CD3 maps to the two chains the tutorial's ids name.
ANTIBODY_ALIASES: dict[str, tuple[str, ...]] = {
    "CD3": ("CD3E", "CD3D"),
    "CD8": ("CD8A",),
    "CD11A": ("ITGAL",),
    "CD11B": ("ITGAM",),
    "CD11C": ("ITGAX",),
    "CD13": ("ANPEP",),
    "CD16": ("FCGR3A",),
    "CD20": ("MS4A1",),
    "CD21": ("CR2",),
    "CD23": ("FCER2",),
    "CD25": ("IL2RA",),
    "CD26": ("DPP4",),
    "CD29": ("ITGB1",),
    "CD31": ("PECAM1",),
    "CD32": ("FCGR2A",),
    "CD35": ("CR1",),
    "CD39": ("ENTPD1",),
    "CD42B": ("GP1BA",),
    "CD45": ("PTPRC",),
    "CD45RA": ("PTPRC",),
    "CD45RO": ("PTPRC",),
    "CD49A": ("ITGA1",),
    "CD49F": ("ITGA6",),
    "CD54": ("ICAM1",),
    "CD56": ("NCAM1",),
    "CD62L": ("SELL",),
    "CD64": ("FCGR1A",),
    "CD71": ("TFRC",),
    "CD85J": ("LILRB1",),
    "CD88": ("C5AR1",),
    "CD94": ("KLRD1",),
    "CD95": ("FAS",),
    "CD112": ("NECTIN2",),
    "CD115": ("CSF1R",),
    "CD122": ("IL2RB",),
    "CD123": ("IL3RA",),
    "CD124": ("IL4R",),
    "CD127": ("IL7R",),
    "CD134": ("TNFRSF4",),
    "CD137": ("TNFRSF9",),
    "CD152": ("CTLA4",),
    "CD154": ("CD40LG",),
    "CD155": ("PVR",),
    "CD158E1": ("KIR3DL1",),
    "CD161": ("KLRB1",),
    "CD162": ("SELPLG",),
    "CD172A": ("SIRPA",),
    "CD185": ("CXCR5",),
    "CD192": ("CCR2",),
    "CD194": ("CCR4",),
    "CD195": ("CCR5",),
    "CD196": ("CCR6",),
    "CD223": ("LAG3",),
    "CD268": ("TNFRSF13C",),
    "CD270": ("TNFRSF14",),
    "CD272": ("BTLA",),
    "CD278": ("ICOS",),
    "CD303": ("CLEC4C",),
    "CD304": ("NRP1",),
    "CD314": ("KLRK1",),
    "CD319": ("SLAMF7",),
    "CD328": ("SIGLEC7",),
    "CD335": ("NCR1",),
    "CD352": ("SLAMF6",),
    "FCERIA": ("FCER1A",),
    "IGD": ("IGHD",),
    "IGM": ("IGHM",),
    "INTEGRINB7": ("ITGB7",),
    "HLA-DR": ("HLA-DRA",),
    "HLA-A-B-C": ("HLA-A", "HLA-B", "HLA-C"),
    "HLA-ABC": ("HLA-A", "HLA-B", "HLA-C"),
}


def normalize_antibody_name(name: str) -> str:
    """An antibody name without clone, vendor and assay decorations.

    >>> [normalize_antibody_name(n) for n in ("CD3_TotalSeqB", "CD45RA-TotalA", "CD4 (RPA-T4)", "ADT_CD19", "CD8.ADT")]
    ['CD3', 'CD45RA', 'CD4', 'CD19', 'CD8']
    """
    text = str(name).strip()
    for pattern in _ANTIBODY_DECORATIONS:
        stripped = pattern.sub("", text).strip()
        text = stripped or text
    return text


def antibody_to_symbols(name: str, species: str | None = "human", known: Iterable[str] | None = None) -> list[str]:
    """Gene symbol(s) of an antibody name.

    :func:`normalize_antibody_name`, then :data:`ANTIBODY_ALIASES`, else the name itself in the species' symbol style
    (``CD4``; mouse ``Cd4``).

    A name of the form ``CD3_UCHT1`` (clone after an underscore) is tried without its last parts too. Isotype
    controls map to nothing. ``known``: symbols the name itself must be one of to be taken as a symbol (e.g. the RNA
    modality's symbols and the annotation keys); human aliases are always taken. Mouse: the table's symbols in mouse
    style (``PTPRC`` -> ``Ptprc``), each only where ``known`` has it (the table is human; mouse orthologs are not
    always named alike).
    """
    text = normalize_antibody_name(name)
    if _CONTROL.search(text):
        return []
    known = None if known is None else set(known)
    parts = re.split(r"[_|]", text)
    for n in range(len(parts), 0, -1):
        candidate = "_".join(parts[:n]).strip()
        if not candidate:
            continue
        symbols = ANTIBODY_ALIASES.get(candidate.upper())
        if symbols is None:
            styled = candidate.upper() if species != "mouse" else candidate[:1].upper() + candidate[1:].lower()
            if classify_gene_id(styled)[0] == "symbol" and (known is None or styled in known):
                return [styled]
            continue
        if species == "mouse":  # the table is human: a mouse-style alias counts only where the data know it
            styled = [s[:1] + s[1:].lower() for s in symbols]
            return [s for s in styled if known is not None and s in known]
        return list(symbols)
    return []
