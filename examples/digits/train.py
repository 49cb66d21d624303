#!/usr/bin/env python3
"""Trains the digits MLP and exports it for digits.cc.

Data: the 8x8 handwritten digits (1,797 samples, pixel values 0..16) that scikit-learn bundles
as `digits.csv.gz`; scripts/install-deps.sh takes that file from Debian's python3-sklearn
package (no downloads beyond Debian's). Training uses NumPy only: a stratified 75/25 split,
one hidden layer of 64 ReLU units, softmax cross-entropy, Adam. Writes one JSON file with the
weights (input-major: w[i][j] joins input i to unit j), the input scale and the held-out split,
prints the held-out accuracy and fails (exit 1) below 0.9.

    python3 train.py OUT.json [DIGITS_CSV_GZ]
"""
import gzip
import json
import os
import sys

import numpy as np

SCALE = 1.0 / 16.0  # pixel values are 0..16
DATA_CANDIDATES = [
    os.environ.get("SERVE_DIGITS_DATA", ""),
    "/usr/local/share/serve/sklearn-data/digits.csv.gz",
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz",
]


def load(path):
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


def stratified_split(y, test_fraction, rng):
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.array(sorted(train)), np.array(sorted(test))


def train(x, y, classes, rng, hidden=64, epochs=200, batch=64, lr=1e-3):
    n_in, n_out = x.shape[1], len(classes)
    w1 = rng.normal(0, np.sqrt(2.0 / n_in), (n_in, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, np.sqrt(2.0 / hidden), (hidden, n_out))
    b2 = np.zeros(n_out)
    params = [w1, b1, w2, b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    onehot = np.eye(n_out)[np.searchsorted(classes, y)]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            i = order[start:start + batch]
            h = np.maximum(x[i] @ w1 + b1, 0)
            logits = h @ w2 + b2
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            d_logits = (p - onehot[i]) / len(i)
            d_h = (d_logits @ w2.T) * (h > 0)
            grads = [x[i].T @ d_h, d_h.sum(axis=0), h.T @ d_logits, d_logits.sum(axis=0)]
            step += 1
            for k, g in enumerate(grads):  # Adam
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                m_hat = m[k] / (1 - 0.9 ** step)
                v_hat = v[k] / (1 - 0.999 ** step)
                params[k] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return params


def predict(params, x, classes):
    w1, b1, w2, b2 = params
    return classes[np.argmax(np.maximum(x @ w1 + b1, 0) @ w2 + b2, axis=1)]


def main(out_path, data_path=None):
    paths = [data_path] if data_path else [p for p in DATA_CANDIDATES if p]
    found = next((p for p in paths if os.path.exists(p)), None)
    if found is None:
        print(f"digits data not found (looked at {paths}); run scripts/install-deps.sh",
              file=sys.stderr)
        return 1
    x, y = load(found)
    rng = np.random.default_rng(0)
    train_idx, test_idx = stratified_split(y, 0.25, rng)
    classes = np.unique(y)
    params = train(x[train_idx] * SCALE, y[train_idx], classes, rng)
    accuracy = float(np.mean(predict(params, x[test_idx] * SCALE, classes) == y[test_idx]))
    print(f"digits MLP: held-out accuracy {accuracy:.4f} on {len(test_idx)} samples")
    if accuracy < 0.9:
        print("accuracy below 0.9", file=sys.stderr)
        return 1
    w1, b1, w2, b2 = params
    layers = [{"w": w.astype("float32").tolist(), "b": b.astype("float32").tolist()}
              for w, b in ((w1, b1), (w2, b2))]
    doc = {
        "input_scale": SCALE,
        "classes": [int(c) for c in classes],
        "layers": layers,
        "trainer_accuracy": accuracy,
        "test": {"x": x[test_idx].astype(int).tolist(), "y": [int(v) for v in y[test_idx]]},
    }
    with open(out_path, "w") as f:
        json.dump(doc, f)
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
