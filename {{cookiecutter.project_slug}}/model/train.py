"""Train one forecasting configuration and write $RESULT_DIR/metrics.json.

Parameters arrive as environment variables: the params stage writes one env file per
configuration (runs/<run>/envs/<config-id>.env). To run one configuration by hand, in the
foreground (print, breakpoint() and Ctrl-C work as usual):
    mlops run --local --config <config-id> [--set window=48]
W&B picks its project, group, run name and directory up from WANDB_* variables in that file.

Put your own model into `fit_predict`; keep reading parameters from the environment.
"""
import json
import os
import time
from pathlib import Path

import numpy as np
{%- if cookiecutter.ml_framework == "pytorch" %}
import torch
from torch import nn
{%- else %}
from sklearn.linear_model import Ridge
{%- endif %}

os.environ.setdefault("WANDB_MODE", "offline")  # never wait on a network by accident
import wandb  # noqa: E402

WINDOW = int(os.environ["WINDOW"])            # hours of history the model sees
HORIZON = int(os.environ["HORIZON"])          # hours to forecast
TEST_FRACTION = float(os.environ["TEST_FRACTION"])
SEED = int(os.environ["SEED"])
{%- if cookiecutter.ml_framework == "pytorch" %}
HIDDEN_SIZE = int(os.environ["HIDDEN_SIZE"])
DROPOUT = float(os.environ["DROPOUT"])
LEARNING_RATE = float(os.environ["LEARNING_RATE"])
EPOCHS = int(os.environ["EPOCHS"])
{%- else %}
ALPHA = float(os.environ["ALPHA"])            # ridge regularisation strength
{%- endif %}
{%- if cookiecutter.ml_framework == "pytorch" %}
PARAMETERS = {"window": WINDOW, "horizon": HORIZON, "test_fraction": TEST_FRACTION, "seed": SEED,
              "hidden_size": HIDDEN_SIZE, "dropout": DROPOUT, "learning_rate": LEARNING_RATE, "epochs": EPOCHS}
{%- else %}
PARAMETERS = {"window": WINDOW, "horizon": HORIZON, "test_fraction": TEST_FRACTION, "seed": SEED, "alpha": ALPHA}
{%- endif %}
DATA_DIR = Path(os.environ["DATA_DIR"])
RESULT_DIR = Path(os.environ["RESULT_DIR"])


def windows(series, window, horizon):
    """Inputs: `window` past values; targets: the next `horizon` values."""
    n = len(series) - window - horizon + 1
    if n < 2:
        raise ValueError(f"series of {len(series)} values is too short for window={window}, horizon={horizon}")
    x = np.stack([series[i:i + window] for i in range(n)])
    y = np.stack([series[i + window:i + window + horizon] for i in range(n)])
    return x, y
{% if cookiecutter.ml_framework == "pytorch" %}

def fit_predict(x_train, y_train, x_test, run):
    """A small MLP, trained full-batch with Adam on standardised values."""
    torch.manual_seed(SEED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mean, std = x_train.mean(), x_train.std()
    as_tensor = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32, device=device)  # noqa: E731
    model = nn.Sequential(nn.Linear(WINDOW, HIDDEN_SIZE), nn.ReLU(), nn.Dropout(DROPOUT),
                          nn.Linear(HIDDEN_SIZE, HORIZON)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    xt, yt = as_tensor(x_train), as_tensor(y_train)
    for epoch in range(EPOCHS):
        model.train()
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(xt), yt)
        loss.backward()
        optimizer.step()
        run.log({"epoch": epoch, "train_loss": loss.item()})
    model.eval()
    with torch.no_grad():
        return model(as_tensor(x_test)).cpu().numpy() * std + mean
{% else %}

def fit_predict(x_train, y_train, x_test, run):
    """Ridge regression from the last WINDOW hours to the next HORIZON hours."""
    model = Ridge(alpha=ALPHA).fit(x_train, y_train)
    return model.predict(x_test)
{% endif %}

def main():
    series = np.loadtxt(DATA_DIR / "series.csv", delimiter=",", skiprows=1, usecols=1)
    x, y = windows(series, WINDOW, HORIZON)
    split = int(len(x) * (1 - TEST_FRACTION))
    run = wandb.init(config=PARAMETERS)
    started = time.time()
    prediction = fit_predict(x[:split], y[:split], x[split:], run)
    # Baseline: seasonal naive, i.e. "the same hour yesterday".
    naive = x[split:, WINDOW - 24 + np.arange(HORIZON) % 24] if WINDOW >= 24 else np.repeat(x[split:, -1:], HORIZON, 1)
    mae = float(np.abs(prediction - y[split:]).mean())
    metrics = {
        "mae": mae,
        "rmse": float(np.sqrt(((prediction - y[split:]) ** 2).mean())),
        "mase": mae / float(np.abs(naive - y[split:]).mean()),
        "train_seconds": round(time.time() - started, 3),
        "n_train": split, "n_test": len(x) - split,
    }
    run.summary.update(metrics)
    run.finish()
    RESULT_DIR.mkdir(parents=True, exist_ok=True)
    (RESULT_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
