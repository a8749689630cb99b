"""``collapsekit doctor``: a run directory of collapsekit train and a MODULE:OBJECT factory; JSON; exit statuses."""

from __future__ import annotations

import json
import textwrap

from collapsekit.cli import main

FACTORY = textwrap.dedent('''
    import torch
    from collapsekit.models import BernoulliLikelihood, MLPDecoder, MLPEncoder, VAE
    from collapsekit.data import load_digits

    def make(recon="{recon}"):
        torch.manual_seed(0)
        model = VAE(MLPEncoder(64, 4, hidden=(32,)), MLPDecoder(4, 64, hidden=(32,)), BernoulliLikelihood())
        data = torch.as_tensor(load_digits().x[:256])

        def loss_fn(model, batch):
            out = model(batch)
            log_p = out.likelihood.log_prob(out.target).mean()
            if recon == "mean":
                log_p = log_p / out.target.shape[-1]
            level = out.levels[0]
            kl = torch.distributions.kl_divergence(level.posterior, level.prior).sum(-1).mean()
            return -log_p + kl

        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(80):
            start = (step * 64) % 256
            optimizer.zero_grad()
            loss_fn(model, data[start:start + 64]).backward()
            optimizer.step()
        return model, data, loss_fn, optimizer
''')


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_factory_with_a_planted_reduction_bug_fails_in_json_and_exits_1(tmp_path, capsys):
    bad, good = tmp_path / "bad_model.py", tmp_path / "good_model.py"
    bad.write_text(FACTORY.replace("{recon}", "mean"), encoding="utf-8")
    good.write_text(FACTORY.replace("{recon}", "sum"), encoding="utf-8")
    status, out, _ = run(capsys, "doctor", "--factory", f"{bad}:make", "--json", "--examples", "256")
    assert status == 1
    report = json.loads(out)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["effective_beta"]["status"] == "fail" and abs(checks["effective_beta"]["effective_beta"] - 64) < 1
    assert all(set(c) >= {"name", "status", "message"} and c["status"] in ("ok", "warn", "fail")
               for c in report["checks"])
    status, out, _ = run(capsys, "doctor", "--factory", f"{good}:make", "--checks", "effective_beta,decoder_uses_z")
    assert status == 0
    assert "ok     effective_beta: the loss weighs the KL by β_eff = 1" in out and "decoder_uses_z" in out


def test_a_run_directory_is_examined_with_its_own_loss_schedule_and_beta(tmp_path, capsys):
    run_dir = tmp_path / "run"
    status, _, _ = run(capsys, "train", "--model", "vae", "--arch", "linear", "--latent-dims", "3",
                       "--data", "gaussian:eigs=9:4:1:0.25,n=500,seed=1,exact=1", "--beta", "5", "--lr", "0.03",
                       "--epochs", "40", "--batch-size", "100", "--out", str(run_dir), "--no-progress")
    assert status == 0
    status, out, _ = run(capsys, "doctor", str(run_dir), "--json", "--device", "cpu")
    assert status == 0
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["effective_beta"]["status"] == "ok" and abs(checks["effective_beta"]["effective_beta"] - 5) < 0.05
    assert checks["schedule"]["status"] == "ok"
    assert checks["theory"]["predicted_active"] == checks["theory"]["measured_active"] == 1


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    status, _, err = run(capsys, "doctor")
    assert status == 2 and err.count("\n") == 1 and "RUN_DIR or --factory" in err
    status, _, err = run(capsys, "doctor", "--factory", "no_such_module_xyz:make")
    assert status == 2 and err.count("\n") == 1 and "importing no_such_module_xyz failed" in err
    broken = tmp_path / "broken.py"
    broken.write_text("def make():\n    return 42\n", encoding="utf-8")
    status, _, err = run(capsys, "doctor", "--factory", f"{broken}:make")
    assert status == 2 and err.count("\n") == 1 and "expected (model, data, loss_fn" in err
    status, _, err = run(capsys, "doctor", str(tmp_path / "missing"))
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
