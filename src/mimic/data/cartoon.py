"""A cartoon face as polygons: the expression of every class, the head, hair, eyes, brows, nose and mouth.

`face_layers` gives the polygons of a batch of faces in drawing order (`Layers`), from each face's class (its row in
the expression table, `class_index`) and its variations (pose, identity and how strong the expression is:
`mimic.data.synthetic` samples them and turns the polygons into images). Faces are polygons in a face-centred frame
(head half-width 1, y pointing down) mapped to pixels by one similarity transform per face. The geometry of a whole
batch is computed at once with numpy; per face only the cv2.fillPoly calls remain, which is what makes thousands of
faces a second possible.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mimic.labels import KNOWN_CLASSES, UnknownClassError, canonical

_SHIFT = 4  # sub-pixel bits for cv2 drawing
LUMA = np.array([0.114, 0.587, 0.299])  # BGR -> gray weights

# Expression geometry, one row per class in KNOWN_CLASSES order. brow_inner/outer: y of the brow ends (negative is
# up); arch: brow bow; eye_open: half-height of the eye; lid_tilt > 0 lowers the upper lid at the inner corner
# (angry), < 0 at the outer corner (sad); mouth_curve: corners this much above (> 0) or below the centre.
_EXPR_FIELDS = (
    "brow_inner",
    "brow_outer",
    "brow_arch",
    "eye_open",
    "lid_tilt",
    "mouth_width",
    "mouth_curve",
    "mouth_open",
)
_EXPRESSIONS: dict[str, tuple[str, tuple[float, ...]]] = {
    "angry": ("line", (-0.28, -0.58, -0.02, 0.06, 0.08, 0.24, -0.04, 0.0)),
    "disgust": ("wavy", (-0.32, -0.36, 0.0, 0.055, 0.03, 0.30, 0.0, 0.0)),
    "fear": ("wide", (-0.64, -0.52, 0.01, 0.12, -0.02, 0.31, -0.05, 0.10)),
    "happy": ("smile", (-0.48, -0.47, 0.07, 0.075, 0.0, 0.38, 0.2, 0.18)),
    "sad": ("line", (-0.62, -0.38, 0.0, 0.075, -0.06, 0.30, -0.17, 0.0)),
    "surprise": ("o", (-0.66, -0.60, 0.11, 0.13, 0.0, 0.12, 0.0, 0.14)),
    "neutral": ("line", (-0.46, -0.46, 0.04, 0.09, 0.0, 0.28, 0.0, 0.0)),
    "contempt": ("smirk", (-0.46, -0.50, 0.05, 0.08, 0.0, 0.30, 0.17, 0.0)),
}
assert tuple(_EXPRESSIONS) == KNOWN_CLASSES
_MOUTH = np.array([m for m, _ in _EXPRESSIONS.values()])
_EXPR = {f: np.array([row[i] for _, row in _EXPRESSIONS.values()]) for i, f in enumerate(_EXPR_FIELDS)}
_NEUTRAL = KNOWN_CLASSES.index("neutral")


def class_index(name: str) -> int:
    """The expression row (= index in KNOWN_CLASSES) of class ``name``, synonyms allowed."""
    key = canonical(name)
    if key not in _EXPRESSIONS:
        raise UnknownClassError(f"no synthetic face for class {name!r}. Known classes: {', '.join(KNOWN_CLASSES)}.")
    return KNOWN_CLASSES.index(key)


# ---------------------------------------------------------------------------------------------------------- geometry
def _circle(n: int, start: float = 0.0, stop: float = 2 * np.pi, endpoint: bool = False) -> np.ndarray:
    t = np.linspace(start, stop, n, endpoint=endpoint)
    return np.stack([np.cos(t), np.sin(t)], 1)


_CIRCLES = {n: _circle(n) for n in (10, 12, 14, 16, 20, 28, 40)}


def _pair(a, b) -> np.ndarray:
    """Two scalars or (m,) arrays -> points (1, 2) or (m, 1, 2) to broadcast against (P, 2) shapes."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.stack([a, b], -1)[..., None, :]


def _ellipse(cx, cy, ax, ay, n: int = 28) -> np.ndarray:
    """Ellipse outline(s): (n, 2) for scalar arguments, (m, n, 2) for (m,) arrays."""
    return _CIRCLES[n] * _pair(ax, ay) + _pair(cx, cy)


def _curve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(m, P) x and y -> (m, P, 2) points."""
    x, y = np.broadcast_arrays(x, y)
    return np.stack([x, y], -1)


def _stroke(curve: np.ndarray, width) -> np.ndarray:
    """Thick line(s) along ``curve`` (..., N, 2) as polygons (..., 2N, 2), so strokes scale with the face.
    ``width`` is a scalar or one value per curve."""
    d = np.empty_like(curve)
    d[..., 1:-1, :] = curve[..., 2:, :] - curve[..., :-2, :]
    d[..., 0, :], d[..., -1, :] = curve[..., 1, :] - curve[..., 0, :], curve[..., -1, :] - curve[..., -2, :]
    normal = d[..., ::-1] * (-1.0, 1.0)
    half = np.asarray(width, dtype=np.float64) / 2
    if half.ndim:
        half = half.reshape(half.shape + (1, 1))
    normal *= half / (np.sqrt((normal * normal).sum(-1, keepdims=True)) + 1e-9)
    return np.concatenate([curve + normal, (curve - normal)[..., ::-1, :]], axis=-2)


_U13 = np.linspace(-1, 1, 13)
_U17 = np.linspace(-1, 1, 17)
_BROW_T = np.linspace(0, 1, 9)
_BROW_ARCH = np.sin(np.pi * _BROW_T)
_CAP = _circle(24, np.pi, 2 * np.pi, endpoint=True)  # upper half of the unit circle, for hair
_CAP_EDGE = np.array([[0.97, -0.68], [0.3, -0.92], [-0.4, -0.9], [-0.97, -0.68]])
_FRINGE = np.stack(
    [np.linspace(0.98, -0.98, 9), -0.9 + 0.07 * (np.arange(9) % 2) + 0.04 * np.linspace(0.98, -0.98, 9)], 1
)
_NECK = np.array([[-0.45, 0.6], [0.45, 0.6], [0.5, 2.2], [-0.5, 2.2]])
_SHOULDERS = _ellipse(0.0, 2.55, 1.9, 0.9)
_EARS = [_ellipse(s * 0.97, -0.05, 0.16, 0.27, 16) for s in (-1, 1)]
_FOREHEAD = _ellipse(0.0, -0.72, 0.55, 0.25)
_CHEEKS = [_ellipse(s * 0.45, 0.28, 0.24, 0.18, 20) for s in (-1, 1)]
_BRIDGE = _ellipse(0.0, -0.05, 0.07, 0.2, 12)
_NOSE_SHADOW = _ellipse(0.03, 0.2, 0.15, 0.07, 14)
_NOSTRILS = [_ellipse(s * 0.07, 0.2, 0.04, 0.025, 10) for s in (-1, 1)]
_WRINKLES = [_stroke(np.array([[s * 0.08, -0.02], [s * 0.16, 0.06], [s * 0.2, 0.14]]), 0.035) for s in (-1, 1)]
_WAVE = np.sin(1.5 * np.pi * _U17)
_SMIRK = np.clip(_U13, 0, 1) ** 1.6
_NEUTRAL_TINT = np.ones(3)
_LIP_TINT = np.array([0.9, 0.9, 1.3])


class Layers:
    """Polygons of a batch of faces in drawing order; each layer holds one polygon for some of the faces."""

    def __init__(self, n: int, bgr: bool):
        self.n, self.bgr = n, bgr
        self.layers: list[tuple[np.ndarray | None, np.ndarray, np.ndarray]] = []

    def add(self, pts: np.ndarray, level, tint=_NEUTRAL_TINT, idx: np.ndarray | None = None) -> None:
        """``pts``: (P, 2) shared by all faces or (m, P, 2), one per face in ``idx`` (all faces when None);
        ``level``: gray level(s); ``tint``: BGR multiplier(s), (3,) or (m, 3), kept at the given gray level."""
        m = self.n if idx is None else len(idx)
        if m == 0:
            return
        level = np.broadcast_to(np.asarray(level, dtype=np.float64), (m,))
        if self.bgr:
            tint = np.broadcast_to(np.asarray(tint, dtype=np.float64), (m, 3))
            color = np.clip(level[:, None] * tint / (tint @ LUMA)[:, None], 0, 255)
        else:
            color = np.clip(level, 0, 255)
        self.layers.append((idx, pts, color))

    def draw(
        self,
        targets: Sequence[np.ndarray],
        center: np.ndarray,
        unit: np.ndarray,
        rotation: np.ndarray,
        flip: np.ndarray,
    ) -> None:
        """Map every face's polygons by its similarity transform and fill them, face by face, layer by layer."""
        a = np.radians(rotation)
        cos, sin, f = unit * np.cos(a), unit * np.sin(a), np.where(flip > 0.5, -1.0, 1.0)
        m = np.stack([np.stack([f * cos, f * sin], -1), np.stack([-sin, cos], -1)], 1)  # (n, 2, 2) row-vector form
        per_face = []
        for idx, pts, color in self.layers:
            sel = slice(None) if idx is None else idx
            px = np.rint((pts @ m[sel] + center[sel, None, :]) * (1 << _SHIFT)).astype(np.int32)
            pos = np.full(self.n, -1)
            pos[sel] = np.arange(len(px))
            per_face.append((pos.tolist(), list(px), color.tolist()))
        for i, img in enumerate(targets):
            for pos, polys, colors in per_face:
                j = pos[i]
                if j >= 0:
                    cv2.fillPoly(img, [polys[j]], colors[j], cv2.LINE_AA, _SHIFT)


def face_layers(cls: np.ndarray, v: dict, bgr: bool) -> Layers:
    """All polygons of faces of classes ``cls`` (indices into KNOWN_CLASSES) with variations ``v`` (one array per
    variation of `mimic.data.synthetic`, a value per face)."""
    n = len(cls)
    L = Layers(n, bgr)
    e = {f: _EXPR[f][cls] for f in _EXPR_FIELDS}
    neutral = {f: _EXPR[f][_NEUTRAL] for f in _EXPR_FIELDS}
    k = v["intensity"]
    mix = lambda f: neutral[f] + k * (e[f] - neutral[f])  # noqa: E731  the expression, scaled by intensity
    skin, st, ht = v["skin"], v["skin_tint"], v["hair_tint"]
    dark = np.maximum(5.0, 0.18 * skin)
    ay = 1.28 * v["face_aspect"]
    mouth = _MOUTH[cls]

    L.add(_NECK, skin * 0.72, st)
    L.add(_SHOULDERS, v["hair_level"] * 1.3 + 40, ht)  # clothes
    for ear in _EARS:
        L.add(ear, skin * 0.8, st)
    L.add(_ellipse(0.0, 0.05, 1.0, ay, 40), skin * 0.78, st)  # shaded rim of the head
    L.add(_ellipse(0.0, 0.0, 0.86, ay - 0.16, 40), skin, st)
    L.add(_FOREHEAD, skin * 1.08, st)
    for cheek in _CHEEKS:
        L.add(cheek, skin * 1.1, st)

    cap = _CAP * _pair(1.04, ay + 0.06) + (0.0, 0.05)  # (n, 24, 2)
    for style, edge in ((1, _CAP_EDGE), (2, _FRINGE)):
        idx = np.flatnonzero(v["hair"] == style)
        L.add(
            np.concatenate([cap[idx], np.broadcast_to(edge, (len(idx),) + edge.shape)], 1),
            v["hair_level"][idx],
            ht[idx],
            idx,
        )
    bald = np.flatnonzero(v["hair"] == 0)
    L.add(_ellipse(0.0, 0.15 - ay[bald], 0.5, 0.08), skin[bald] * 1.12, st[bald], bald)  # shine

    # eyes: socket shadow, white, iris and an upper lid tilted by the expression
    eye_x, eye_y = 0.37 + v["eye_dx"], -0.18 + v["eye_dy"]
    eye_h = np.maximum(0.03, mix("eye_open"))
    tilt = k * e["lid_tilt"]
    lid_y = eye_y - eye_h
    for side in (-1, 1):
        cx = side * eye_x
        lid = np.stack(
            [_curve(cx - side * 0.17, lid_y + tilt), _curve(cx, lid_y - 0.01), _curve(cx + side * 0.17, lid_y - tilt)],
            1,
        )
        L.add(_ellipse(cx, eye_y - 0.02, 0.25, 0.19, 20), skin * 0.62, st)
        L.add(_ellipse(cx, eye_y, 0.16, eye_h, 20), np.minimum(235, skin * 0.5 + 130))
        iris = np.maximum(0.075, 0.75 * eye_h)
        L.add(_ellipse(cx, eye_y, iris, np.minimum(iris, eye_h), 16), dark)
        L.add(_stroke(lid, 0.05), dark)

    # brows: inner and outer end heights and arch from the expression; contempt raises the smirking side
    inner, outer = mix("brow_inner") + v["eye_dy"], mix("brow_outer") + v["eye_dy"]
    width = np.where(e["brow_inner"] > -0.4, 0.12, 0.1)
    by = inner[:, None] + _BROW_T * (outer - inner)[:, None] - mix("brow_arch")[:, None] * _BROW_ARCH
    bx = (eye_x - 0.25)[:, None] + _BROW_T * 0.48
    for side in (-1, 1):
        lift = np.where(mouth == "smirk", 0.08 * k, 0.0) if side == 1 else 0.0
        L.add(_stroke(_curve(side * bx, by - np.asarray(lift)[..., None]), width), dark * 1.3, ht)

    # nose: bridge highlight, shadow, nostrils; disgust wrinkles it
    L.add(_BRIDGE, skin * 1.12, st)
    L.add(_NOSE_SHADOW, skin * 0.7, st)
    for nostril in _NOSTRILS:
        L.add(nostril, dark * 1.5)
    wavy = np.flatnonzero(mouth == "wavy")
    for wrinkle in _WRINKLES:
        L.add(wrinkle, skin[wavy] * 0.55, st[wavy], wavy)

    _mouth_layers(L, mouth, e, v, dark)
    return L


def _mouth_layers(L: Layers, mouth: np.ndarray, e: dict, v: dict, dark: np.ndarray) -> None:
    k, skin = v["intensity"], v["skin"]
    y0 = 0.52 + v["mouth_dy"]
    w = e["mouth_width"] * (0.92 + 0.08 * k)
    lip, inside = dark * 1.6, dark * 0.7
    teeth = np.minimum(240, skin * 0.45 + 140)
    curve = k * e["mouth_curve"]

    def upper(i: np.ndarray) -> np.ndarray:  # line from corner to corner, corners ``curve`` above the centre
        return _curve(_U13 * w[i, None], y0[i, None] - curve[i, None] * _U13**2)

    i = np.flatnonzero(mouth == "line")
    L.add(_stroke(upper(i), np.where(e["brow_inner"][i] > -0.4, 0.1, 0.075)), lip[i], _LIP_TINT, i)

    smile = mouth == "smile"
    i = np.flatnonzero(smile & (v["grin"] < 0.5))
    L.add(_stroke(upper(i), 0.09), lip[i], _LIP_TINT, i)
    i = np.flatnonzero(smile & (v["grin"] > 0.5))  # open grin: a dark crescent with a row of teeth
    top, depth = upper(i), (k[i] * e["mouth_open"][i])[:, None] * (1 - _U13**2)
    L.add(np.concatenate([top, _curve(top[..., 0], top[..., 1] + depth)[:, ::-1]], 1), inside[i], _LIP_TINT, i)
    L.add(np.concatenate([top, _curve(top[..., 0], top[..., 1] + 0.4 * depth)[:, ::-1]], 1), teeth[i], idx=i)
    L.add(_stroke(top, 0.04), lip[i], _LIP_TINT, i)

    i = np.flatnonzero(mouth == "o")
    ax, ay = w[i] * (0.9 + 0.1 * k[i]), e["mouth_open"][i] * (0.7 + 0.3 * k[i])
    L.add(_ellipse(0.0, y0[i] + 0.04, ax + 0.04, ay + 0.04), lip[i], _LIP_TINT, i)
    L.add(_ellipse(0.0, y0[i] + 0.04, ax, ay), inside[i], _LIP_TINT, i)

    i = np.flatnonzero(mouth == "wide")  # fear: stretched open mouth, both rows of teeth
    x, rel = _U13 * w[i, None], _U13**2
    top = _curve(x, (y0[i] - 0.06)[:, None] + 0.05 * rel)
    bottom = _curve(x, top[..., 1] + 0.02 + (k[i] * e["mouth_open"][i] * 2)[:, None] * (1 - rel**3))
    L.add(_stroke(np.concatenate([top, bottom[:, ::-1], top[:, :1]], 1), 0.06), lip[i], _LIP_TINT, i)
    L.add(np.concatenate([top, bottom[:, ::-1]], 1), inside[i], _LIP_TINT, i)
    L.add(np.concatenate([top[:, 2:-2], (top[:, 2:-2] + (0, 0.045))[:, ::-1]], 1), teeth[i], idx=i)
    L.add(np.concatenate([bottom[:, 3:-3], (bottom[:, 3:-3] - (0, 0.04))[:, ::-1]], 1), teeth[i], idx=i)

    i = np.flatnonzero(mouth == "wavy")  # disgust: wavy, one side raised
    y = y0[i, None] + k[i, None] * (0.06 * _WAVE - 0.07 * _U17)
    L.add(_stroke(_curve(_U17 * w[i, None], y), 0.09), lip[i], _LIP_TINT, i)

    i = np.flatnonzero(mouth == "smirk")  # contempt: one corner pulled up, with a dimple
    x, y = _U13 * w[i, None] + 0.05, y0[i, None] - curve[i, None] * _SMIRK
    L.add(_stroke(_curve(x, y), 0.085), lip[i], _LIP_TINT, i)
    L.add(_ellipse(x[:, -1] + 0.02, y[:, -1] + 0.05, 0.05, 0.03, 10), skin[i] * 0.65, v["skin_tint"][i], i)
