"""Whose face is it: the majority identity among a user's photos, and outliers.

Works on unit embeddings from any `FaceEmbedder` (similarity = dot product) and the embedder's
own same-person threshold, so it is the same logic for dlib and ArcFace. The threshold is
calibrated on pairs of faces, so every decision here compares faces pairwise (a mean embedding
is "closer" to everybody than any real face is, and would let strangers in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IdentityMatch:
    """For one photo: the face (index into that photo's faces) that is the user's, or None when
    none of its faces is; `similarity` is the best face's median similarity to the majority's
    faces in the other photos (1.0 when there is no other photo to compare with)."""

    face_index: int | None
    similarity: float


@dataclass(frozen=True)
class IdentityResult:
    threshold: float  # similarity at or above which a face is the user's
    members: np.ndarray  # (photos of the majority) x dim: each one's face of the majority person
    matches: list[IdentityMatch]  # one per photo, in input order


def same_person_threshold(same_person_similarity: float, tolerance: float = 1.0) -> float:
    """The model's threshold with its distance (1 - similarity) scaled by `tolerance`."""
    return 1.0 - (1.0 - same_person_similarity) * tolerance


def majority_identity(
    photo_embeddings: Sequence[np.ndarray],
    *,
    same_person_similarity: float,
    tolerance: float = 1.0,
) -> IdentityResult:
    """Find the person who appears in the most photos, and each photo's face of that person.

    `photo_embeddings[i]` is a (faces_i x dim) array of unit embeddings of photo i's candidate
    faces (a photo may have several faces, or none). The anchor is the face with a same-person
    match in the most other photos (ties: the higher summed similarity, then the earlier
    photo); its best match in each photo
    makes the majority's members. Then in every photo the face with the highest median
    similarity to the members of the *other* photos is the user's if it clears the threshold;
    otherwise the photo is an identity outlier.
    """
    threshold = same_person_threshold(same_person_similarity, tolerance)
    owners = np.array([i for i, faces in enumerate(photo_embeddings) for _ in range(len(faces))])
    if len(owners) == 0:
        raise ValueError("no face embeddings to compare")
    every_face = np.vstack([np.asarray(f, dtype=np.float32) for f in photo_embeddings if len(f)])
    similarity = every_face @ every_face.T
    photo_ids = np.unique(owners)
    # best similarity of each face to each photo's faces: faces x photos
    best_per_photo = np.stack([similarity[:, owners == p].max(axis=1) for p in photo_ids], axis=1)
    # a face votes for the other photos only: its own photo always "matches" (similarity ~1 with
    # itself), and those self-matches differing in the last bit picked the anchor among photos
    # of different people (a test flipped between runs); with no votes the first photo leads
    best_per_photo[np.arange(len(owners)), np.searchsorted(photo_ids, owners)] = -np.inf
    matched = best_per_photo >= threshold
    votes, strength = matched.sum(axis=1), np.where(matched, best_per_photo, 0.0).sum(axis=1)
    anchor = int(np.lexsort((-strength, -votes))[0])
    member_rows, member_owners = [], []
    for photo in photo_ids:
        rows = np.flatnonzero(owners == photo)
        best = rows[int(np.argmax(similarity[anchor, rows]))]
        if similarity[anchor, best] >= threshold:
            member_rows.append(best)
            member_owners.append(photo)
    member_rows_arr, member_owners_arr = np.array(member_rows), np.array(member_owners)
    matches = []
    for photo, faces in enumerate(photo_embeddings):
        others = member_rows_arr[member_owners_arr != photo]
        matches.append(_match_photo(np.asarray(faces), every_face[others], threshold))
    return IdentityResult(threshold=threshold, members=every_face[member_rows_arr], matches=matches)


def _match_photo(faces: np.ndarray, members: np.ndarray, threshold: float) -> IdentityMatch:
    if len(faces) == 0:
        return IdentityMatch(face_index=None, similarity=float("nan"))
    if len(members) == 0:  # the only photo of the majority: nothing to compare with
        return IdentityMatch(face_index=0, similarity=1.0)
    scores = np.median(faces.astype(np.float32) @ members.T, axis=1)
    best = int(np.argmax(scores))
    chosen = best if scores[best] >= threshold else None
    return IdentityMatch(face_index=chosen, similarity=float(scores[best]))
