"""Photos of one physical part: exact copies and near-duplicates, found by content.

Near-duplicates are the same physical part photographed again or re-augmented: turned by any
angle, mirrored, shifted, zoomed a little, lit differently. Every part of one product shares its
design, so a plain image correlation calls all of them alike; what tells two parts apart is the
detail: casting texture, burrs, pits, shadows. So each photo is reduced to that detail, in polar
coordinates around the part's centre:

- centre: the point of the part's 180-degree symmetry, found by correlating the photo with
  itself turned half a turn (sub-pixel, needs no segmentation);
- detail: the photo minus a blurred copy of itself (a band-pass), unwrapped into log-polar
  coordinates outside the hub and vanes, minus each ring's mean (what every rotation shares:
  the design's rings).

A rotation is then a circular shift along the angle axis and a mirror reverses it. Retrieval: the
magnitude of the Fourier transform along the angle ignores both, so one matrix product finds
candidate copies among all photos. Verification: each candidate is aligned exactly (every
rotation, the mirror, +-2 rings of zoom) by FFT cross-correlation; its normalised correlation at
the best alignment is the pair's score, and pairs at or above the threshold are near-duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from castinspect.core.io import (
    ImageError,
    decode_raw,
    preprocess,
    read_file,
    to_gray_uint8,
)
from castinspect.core.parallel import decode_all

AUDIT_SIZE = 128  # pixels: the photo is reduced to this first
ANGLES = 128  # polar samples around the circle
RINGS = 96  # log-polar samples along the radius, of which those inside INNER_RADIUS are dropped
INNER_RADIUS = 0.45  # of the unwrapped radius: inside it lie the hub and most of the vanes, alike on every part
RING_SHIFTS = 2  # radial shifts tried in verification: a few percent of zoom
BLUR_SIGMA = 4.0  # the band-pass keeps detail finer than this (pixels at AUDIT_SIZE)
DEFAULT_THRESHOLD = 0.90  # aligned detail correlation at or above which two photos show one part
CANDIDATES = 16  # nearest neighbours per photo that are verified
_WINDOW = cv2.createHanningWindow((AUDIT_SIZE, AUDIT_SIZE), cv2.CV_32F)


@dataclass
class Pair:
    a: int  # index into AuditResult.images
    b: int
    score: float  # aligned detail correlation; 1.0 for byte-identical files
    exact: bool


@dataclass
class Print:
    """What the grouping knows of one photo file: its content hash, size, mode and detail polar."""

    sha256: str
    width: int
    height: int
    mode: str
    polar: np.ndarray


def file_mode(raw: np.ndarray) -> str:
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    return f"{ {1: 'gray', 3: 'colour', 4: 'colour+alpha'}.get(channels, f'{channels}ch') } {raw.dtype}"


def symmetry_centre(img: np.ndarray) -> tuple[float, float]:
    """Centre of the part's half-turn symmetry. The photo turned 180 degrees about the image
    centre equals the photo shifted by twice the part's offset from it; the peak of their
    cross-correlation gives that shift, refined to sub-pixel by a parabola through its neighbours.

    The spectrum is half-whitened (divided by the square root of its magnitude): plain
    correlation has a broad peak, full phase correlation trusts noisy frequencies as much as the
    part's outline. Its error on the casting photos moved, turned and zoomed is measured by
    benchmarks/audit_control.py (docs: honest evaluation).
    """
    n = img.shape[0]
    x = (img - img.mean()) * _WINDOW
    cross = np.fft.fft2(x) * np.conj(np.fft.fft2(x[::-1, ::-1]))
    corr = np.fft.fftshift(np.real(np.fft.ifft2(cross / np.sqrt(np.maximum(np.abs(cross), 1e-9)))))
    iy, ix = np.unravel_index(int(corr.argmax()), corr.shape)

    def vertex(left: float, mid: float, right: float) -> float:
        curve = left - 2 * mid + right
        return 0.5 * (left - right) / curve if curve else 0.0

    dx = ix - n // 2 + vertex(corr[iy, ix - 1], corr[iy, ix], corr[iy, (ix + 1) % n])
    dy = iy - n // 2 + vertex(corr[iy - 1, ix], corr[iy, ix], corr[(iy + 1) % n, ix])
    return (n - 1) / 2 + dx / 2, (n - 1) / 2 + dy / 2


def detail_polar(gray: np.ndarray) -> np.ndarray:
    """(ANGLES, rings) polar unwrap of the photo's detail about its centre, unit norm."""
    x = cv2.GaussianBlur(preprocess(gray, AUDIT_SIZE).astype(np.float32), (0, 0), 1.0)
    centre = symmetry_centre(x)
    detail = x - cv2.GaussianBlur(x, (0, 0), BLUR_SIGMA)
    radius = AUDIT_SIZE * 0.46
    polar = cv2.warpPolar(detail, (RINGS, ANGLES), centre, radius,
                          cv2.INTER_LINEAR | cv2.WARP_FILL_OUTLIERS | cv2.WARP_POLAR_LOG)
    first_ring = int(RINGS * np.log(INNER_RADIUS * radius) / np.log(radius))
    polar = polar[:, first_ring:]
    polar -= polar.mean(axis=0, keepdims=True)
    return polar / (np.linalg.norm(polar) + 1e-6)


def descriptor(polar: np.ndarray) -> np.ndarray:
    """Rotation- and mirror-invariant: Fourier magnitudes along the angle, ring by ring."""
    mag = np.abs(np.fft.rfft(polar, axis=0))[1:ANGLES // 4]
    d = np.log1p(mag * 50).ravel()
    d -= d.mean()
    return (d / (np.linalg.norm(d) + 1e-6)).astype(np.float32)


def aligned_scores(query: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Best correlation of ``query`` with each of ``refs`` over every rotation, the mirror and
    +-RING_SHIFTS radial shifts (both unit norm, so 1.0 is a perfect match)."""
    conj_refs = np.conj(np.fft.rfft(refs, axis=1))
    best = np.full(len(refs), -1.0)
    mirrored = np.roll(query[::-1], 1, axis=0)
    for q in (query, mirrored):
        for shift in range(-RING_SHIFTS, RING_SHIFTS + 1):
            fq = np.fft.rfft(np.roll(q, shift, axis=1), axis=0)
            corr = np.fft.irfft(fq[None] * conj_refs, n=query.shape[0], axis=1).sum(axis=2)
            best = np.maximum(best, corr.max(axis=1))
    return best


def fingerprint(path: str) -> Print:
    """One photo file's Print; ImageError when it cannot be read or decoded."""
    data = read_file(path)
    raw = decode_raw(data, path)
    gray = to_gray_uint8(raw, path)
    return Print(hashlib.sha256(data).hexdigest(), gray.shape[1], gray.shape[0], file_mode(raw), detail_polar(gray))


def fingerprints(paths: list[str], workers: int | None = None) -> list[Print | ImageError]:
    """``fingerprint`` of every file, through the parallel decoder (OpenCV and NumPy's FFTs
    release the GIL)."""
    return decode_all(fingerprint, paths, workers)


def verified_neighbours(queries: np.ndarray, refs: np.ndarray, candidates: int = CANDIDATES,
                       same_set: bool = False) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For each query polar: its ``candidates`` nearest refs by descriptor, with their aligned
    scores. ``same_set`` means queries are refs (a photo is not its own neighbour)."""
    q_desc = np.stack([descriptor(p) for p in queries])
    r_desc = q_desc if same_set else np.stack([descriptor(p) for p in refs])
    k = min(candidates, len(refs) - (1 if same_set else 0))
    if k < 1:
        return
    for start in range(0, len(queries), 512):
        rows = np.arange(start, min(len(queries), start + 512))
        sims = q_desc[rows] @ r_desc.T
        if same_set:
            sims[np.arange(len(rows)), rows] = -np.inf
        for i, cand in zip(rows, np.argpartition(-sims, k - 1, axis=1)[:, :k]):
            yield int(i), cand, aligned_scores(queries[i], refs[cand])


def find_pairs(polars: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
               candidates: int = CANDIDATES) -> list[tuple[int, int, float]]:
    """Near-duplicate pairs (i < j, score) among detail polars: retrieval, then verification."""
    found: dict[tuple[int, int], float] = {}
    for i, cand, scores in verified_neighbours(polars, polars, candidates, same_set=True):
        for j, score in zip(cand, scores):
            if score >= threshold:
                found[(min(i, int(j)), max(i, int(j)))] = float(score)
    return [(i, j, s) for (i, j), s in sorted(found.items())]


def copies_in(paths: list[str], reference_paths: list[str], threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """For each of ``paths``: does ``reference_paths`` (e.g. the training photos) hold the same
    part — byte-identical or a near-duplicate? Unreadable files count as not copied."""
    prints = fingerprints(paths)
    refs = [r for r in fingerprints(reference_paths) if isinstance(r, Print)]
    ref_hashes = {r.sha256 for r in refs}
    ok = [i for i, p in enumerate(prints) if isinstance(p, Print)]
    copied = np.array([isinstance(p, Print) and p.sha256 in ref_hashes for p in prints], dtype=bool)
    if ok and refs:
        queries = np.stack([prints[i].polar for i in ok])
        for i, _, scores in verified_neighbours(queries, np.stack([r.polar for r in refs])):
            copied[ok[i]] |= bool(scores.max() >= threshold)
    return copied


def duplicate_pairs(prints: list[Print | ImageError], threshold: float = DEFAULT_THRESHOLD) -> list[Pair]:
    """Byte-identical pairs (by hash) and near-duplicate pairs (by aligned detail) among the
    readable prints, sorted; indices are into ``prints``."""
    ok = [i for i, p in enumerate(prints) if isinstance(p, Print)]
    pairs: dict[tuple[int, int], Pair] = {}
    by_hash: dict[str, list[int]] = {}
    for i in ok:
        by_hash.setdefault(prints[i].sha256, []).append(i)
    for same in by_hash.values():
        for x in range(len(same)):
            for y in range(x + 1, len(same)):
                pairs[(same[x], same[y])] = Pair(same[x], same[y], 1.0, True)
    if ok:
        for i, j, score in find_pairs(np.stack([prints[i].polar for i in ok]), threshold):
            pairs.setdefault((ok[i], ok[j]), Pair(ok[i], ok[j], score, False))
    return sorted(pairs.values(), key=lambda p: (p.a, p.b))


def group_photos(paths: list[str], threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """A group id per photo: photos of one physical part share an id, so a split that keeps
    groups whole never puts a part on both sides."""
    return groups(len(paths), duplicate_pairs(fingerprints(paths), threshold))


def groups(n: int, pairs: list[Pair]) -> np.ndarray:
    """Group id per image: connected components of the duplicate pairs (union-find)."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs:
        ra, rb = root(p.a), root(p.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]
