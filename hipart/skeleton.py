"""The 17-joint skeleton (Human3.6M order), its 16 bones (= sparse tokens) and their orderings.

Single source of truth for joint order, bones, parts, flip pairs and the
center-to-periphery generation order (docs/ARCHITECTURE.md §3).
"""

from __future__ import annotations

NUM_JOINTS = 17
NUM_BONES = 16  # = number of sparse tokens (J_s)
NUM_DENSE = 48  # dense points / dense tokens (J_d)
NUM_FINE = 96  # fine points (J_f)
TOKENS_PER_PART = NUM_DENSE // NUM_BONES  # r = 3
NUM_HIERARCHY_POINTS = NUM_JOINTS + NUM_DENSE + NUM_FINE  # 161, the lifter's input

JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "spine",
    "thorax",
    "neck",  # neck / nose
    "head_top",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
)
ROOT = 0

# Parent of every joint (-1 for the root).
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# Bone b joins PARENTS[b + 1] -> b + 1: bone b is named after its child joint.
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[j], j) for j in range(1, NUM_JOINTS))
BONE_NAMES: tuple[str, ...] = tuple(f"{JOINT_NAMES[p]}->{JOINT_NAMES[c]}" for p, c in BONES)

# Left/right pairs (joint indices) for horizontal flip augmentation.
JOINT_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))
LEFT_JOINTS: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS: tuple[int, ...] = (1, 2, 3, 14, 15, 16)


def _joint_depth(j: int) -> int:
    d = 0
    while PARENTS[j] != -1:
        j = PARENTS[j]
        d += 1
    return d


# Graph distance of each bone from the pelvis (bones touching the pelvis have distance 1).
BONE_DEPTH: tuple[int, ...] = tuple(_joint_depth(c) for _, c in BONES)

# Center-to-periphery order: bones sorted by distance from the pelvis, ties by bone index.
CENTER_TO_PERIPHERY: tuple[int, ...] = tuple(sorted(range(NUM_BONES), key=lambda b: (BONE_DEPTH[b], b)))
# Plain next-token order (the ablation baseline): bones in index order.
NEXT_TOKEN_ORDER: tuple[int, ...] = tuple(range(NUM_BONES))

# Part p (= bone p = sparse token p) owns dense tokens [3p, 3p + 1, 3p + 2].
DENSE_TOKENS_OF_PART: tuple[tuple[int, ...], ...] = tuple(
    tuple(range(p * TOKENS_PER_PART, (p + 1) * TOKENS_PER_PART)) for p in range(NUM_BONES)
)
PART_OF_DENSE_TOKEN: tuple[int, ...] = tuple(t // TOKENS_PER_PART for t in range(NUM_DENSE))


def flip_permutation() -> list[int]:
    """Joint permutation that swaps left and right joints (an involution)."""
    perm = list(range(NUM_JOINTS))
    for a, b in JOINT_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def bone_flip_permutation() -> list[int]:
    """Bone permutation matching `flip_permutation` (bone b is named after joint b + 1)."""
    jp = flip_permutation()
    return [jp[b + 1] - 1 for b in range(NUM_BONES)]


def generation_order(name: str) -> tuple[int, ...]:
    """Bone order for autoregressive generation: 'center_to_periphery' or 'next_token'."""
    orders = {"center_to_periphery": CENTER_TO_PERIPHERY, "next_token": NEXT_TOKEN_ORDER}
    if name not in orders:
        raise ValueError(f"unknown generation order {name!r}; choose one of {sorted(orders)}")
    return orders[name]
