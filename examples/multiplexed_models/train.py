#!/usr/bin/env python3
"""Trains one gradient-boosted model per customer for models.cc (XGBoost, no downloads).

Each "customer" is one of the small data sets scikit-learn bundles (scripts/install-deps.sh
takes them from Debian's python3-sklearn package), so the four models really differ:
  cancer    breast-cancer diagnosis  (binary:logistic,  30 features)
  wine      wine cultivar            (multi:softprob,   13 features, 3 classes)
  iris      iris species             (multi:softprob,    4 features, 3 classes)
  diabetes  disease progression      (reg:squarederror, 10 features)
Training goes through XGBoost's C API (libxgboost, the library models.cc uses) with ctypes and
NumPy. Each model is trained on a 75% split and checked on the rest (accuracy >= 0.85, or
R^2 >= 0.25 for diabetes; exit 1 below). Writes OUT_DIR/<id>.json (XGBoost's JSON model
format) and OUT_DIR/<id>.sample.json (a few held-out rows with this script's predictions, so the
C++ side can be checked against them).

    python3 train.py OUT_DIR [DATA_DIR]
"""
import ctypes
import gzip
import json
import os
import sys

import numpy as np

DATA_DIRS = [os.environ.get("SERVE_SKLEARN_DATA", ""), "/usr/local/share/serve/sklearn-data",
             "/usr/lib/python3/dist-packages/sklearn/datasets/data"]


def load_csv(path):
    """scikit-learn's bundled CSV layout: a header "n_samples,n_features,names..." then rows
    of features and the target."""
    with open(path) as f:
        next(f)
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1]


def load_diabetes(data_dir):
    with gzip.open(os.path.join(data_dir, "diabetes_data_raw.csv.gz"), "rt") as f:
        x = np.loadtxt(f)
    with gzip.open(os.path.join(data_dir, "diabetes_target.csv.gz"), "rt") as f:
        y = np.loadtxt(f)
    return x, y


CUSTOMERS = {
    "cancer": (lambda d: load_csv(os.path.join(d, "breast_cancer.csv")),
               {"objective": "binary:logistic"}),
    "wine": (lambda d: load_csv(os.path.join(d, "wine_data.csv")),
             {"objective": "multi:softprob", "num_class": "3"}),
    "iris": (lambda d: load_csv(os.path.join(d, "iris.csv")),
             {"objective": "multi:softprob", "num_class": "3"}),
    "diabetes": (load_diabetes, {"objective": "reg:squarederror", "max_depth": "2", "eta": "0.1"}),
}


class XGBoost:
    """The few C API calls training needs."""

    def __init__(self):
        self.lib = ctypes.CDLL("libxgboost.so.0")
        self.lib.XGBGetLastError.restype = ctypes.c_char_p

    def check(self, rc):
        if rc != 0:
            raise RuntimeError(self.lib.XGBGetLastError().decode())

    def matrix(self, x, y=None):
        x = np.ascontiguousarray(x, dtype=np.float32)
        handle = ctypes.c_void_p()
        self.check(self.lib.XGDMatrixCreateFromMat(
            x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.c_uint64(x.shape[0]),
            ctypes.c_uint64(x.shape[1]), ctypes.c_float(np.nan), ctypes.byref(handle)))
        if y is not None:
            y = np.ascontiguousarray(y, dtype=np.float32)
            self.check(self.lib.XGDMatrixSetFloatInfo(
                handle, b"label", y.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                ctypes.c_uint64(len(y))))
        return handle

    def train(self, dtrain, params, rounds):
        booster = ctypes.c_void_p()
        self.check(self.lib.XGBoosterCreate(ctypes.byref(dtrain), ctypes.c_uint64(1),
                                            ctypes.byref(booster)))
        for k, v in params.items():
            self.check(self.lib.XGBoosterSetParam(booster, k.encode(), str(v).encode()))
        for i in range(rounds):
            self.check(self.lib.XGBoosterUpdateOneIter(booster, ctypes.c_int(i), dtrain))
        return booster

    def predict(self, booster, dmat, rows):
        length = ctypes.c_uint64()
        out = ctypes.POINTER(ctypes.c_float)()
        self.check(self.lib.XGBoosterPredict(booster, dmat, ctypes.c_int(0), ctypes.c_uint(0),
                                             ctypes.c_int(0), ctypes.byref(length),
                                             ctypes.byref(out)))
        pred = np.ctypeslib.as_array(out, shape=(length.value,)).astype(float).copy()
        return pred.reshape(rows, -1) if length.value != rows else pred

    def save(self, booster, path):
        self.check(self.lib.XGBoosterSaveModel(booster, path.encode()))


def main(out_dir, data_dir=None):
    dirs = [data_dir] if data_dir else [d for d in DATA_DIRS if d]
    data_dir = next((d for d in dirs if os.path.exists(os.path.join(d, "iris.csv"))), None)
    if data_dir is None:
        print(f"data sets not found in {dirs}; run scripts/install-deps.sh", file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    xgb = XGBoost()
    rng = np.random.default_rng(0)
    failed = False
    for model_id, (load, params) in CUSTOMERS.items():
        x, y = load(data_dir)
        order = rng.permutation(len(x))
        cut = int(len(x) * 0.75)
        train, test = order[:cut], order[cut:]
        booster = xgb.train(xgb.matrix(x[train], y[train]),
                            {"max_depth": "4", "eta": "0.3", "nthread": "1", "seed": "0",
                             **params}, rounds=50)
        pred = xgb.predict(booster, xgb.matrix(x[test]), len(test))
        y_test = y[test]
        if params["objective"] == "reg:squarederror":
            score = 1 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()
            ok, what = score >= 0.25, "R^2"
        else:
            labels = pred.argmax(axis=1) if pred.ndim == 2 else (pred > 0.5).astype(int)
            score = float((labels == y_test).mean())
            ok, what = score >= 0.85, "accuracy"
        print(f"{model_id}: held-out {what} {score:.3f} on {len(y_test)} rows")
        failed |= not ok
        xgb.save(booster, os.path.join(out_dir, model_id + ".json"))
        sample = {"features": x[test][:5].astype(float).tolist(),
                  "predictions": np.asarray(pred[:5], dtype=float).tolist()}
        with open(os.path.join(out_dir, model_id + ".sample.json"), "w") as f:
            json.dump(sample, f)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
