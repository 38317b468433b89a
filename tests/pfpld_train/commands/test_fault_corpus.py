"""The trainer's fault corpus: fit, evaluate and cache over bad manifests, bad options and bad models, in
process. Each case ends in exit 1 with a message that names the place (file, row, point, option), within
seconds, with no traceback and nothing trained or written."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pfpld_train.cli import main

_corpus = Path(__file__).resolve().parents[2] / "landmark_unify" / "commands" / "fault_corpus.py"
_spec = importlib.util.spec_from_file_location("fault_corpus", _corpus)
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


def tiny_onnx(path: Path, factor: float, metadata: dict | None = None, input_shape=("N", 3, 112, 112),
              input_type: str = "FLOAT", output_shape=("N", 196)) -> Path:
    """An ONNX 'landmark model' whose 196 outputs are ``factor`` times the first input values (plus 0.5):
    finite for a finite factor, NaN for factor NaN. ``input_shape`` / ``input_type`` / ``output_shape``: what
    the model declares (NHWC, one channel, a fixed batch, another element type, a wrong output size)."""
    import onnx
    from onnx import TensorProto, helper

    cast = [] if input_type == "FLOAT" else [helper.make_node("Cast", ["input"], ["input_f"], to=TensorProto.FLOAT)]
    nodes = [
        *cast,
        helper.make_node("Flatten", ["input_f" if cast else "input"], ["flat"], axis=1),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["first"]),
        helper.make_node("Mul", ["first", "factor"], ["scaled"]),
        helper.make_node("Add", ["scaled", "half"], ["landmarks"]),
    ]
    inits = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [int(output_shape[-1])]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("factor", TensorProto.FLOAT, [1], [factor]),
        helper.make_tensor("half", TensorProto.FLOAT, [1], [0.5]),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", getattr(TensorProto, input_type),
                                                                           list(input_shape))],
                              [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, list(output_shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trainer_corpus")
    good = fc.good_manifest(folder / "good.parquet")
    broken = fc.broken_manifests(good, folder / "broken")
    broken["valid-point-1e30"] = (fc.with_landmarks(good, folder / "big.parquet", 1e30), "row 0, point")
    broken["valid-point-inf"] = (fc.with_landmarks(good, folder / "inf.parquet", float("inf")), "row 0, point")
    models = {
        "finite": tiny_onnx(folder / "ok.onnx", 0.0),
        "nan-output": tiny_onnx(folder / "nan.onnx", float("nan")),
        "bad-metadata-json": tiny_onnx(folder / "badmeta.onnx", 0.0, {"pfpld_train.preprocess": "{not json"}),
        "metadata-mean-2-values": tiny_onnx(folder / "mean2.onnx", 0.0, {"mean": "1,2"}),
        "metadata-scale-text": tiny_onnx(folder / "scaletext.onnx", 0.0, {"scale": "abc"}),
        # inputs and outputs checked against what the model declares
        "input-nhwc": tiny_onnx(folder / "nhwc.onnx", 0.0, input_shape=("N", 112, 112, 3)),
        "input-one-channel": tiny_onnx(folder / "gray.onnx", 0.0, input_shape=("N", 1, 112, 112)),
        "input-96-pixels": tiny_onnx(folder / "small.onnx", 0.0, input_shape=("N", 3, 96, 96)),
        "input-uint8": tiny_onnx(folder / "u8.onnx", 0.0, input_type="UINT8"),
        "input-3-dims": tiny_onnx(folder / "dims3.onnx", 0.0, input_shape=("N", 3, 12544)),
        "output-10-values": tiny_onnx(folder / "out10.onnx", 0.0, output_shape=("N", 10)),
        "fixed-batch-4": tiny_onnx(folder / "batch4.onnx", 1.0, input_shape=(4, 3, 112, 112)),
        "dynamic-batch": tiny_onnx(folder / "dyn.onnx", 1.0),
    }
    return good, broken, models


MANIFESTS = ("missing-source", "landmarks-50-points", "yaw-as-text", "null-image-path", "bbox-3-values",
             "null-weight", "not-parquet", "missing-file", "valid-point-1e30", "valid-point-inf")


@pytest.mark.parametrize("broken", MANIFESTS)
@pytest.mark.parametrize("command", ["fit", "evaluate", "cache"])
def test_trainer_commands_refuse_broken_manifests(corpus, command, broken, tmp_path, capsys):
    good, cases, models = corpus
    path, expect = cases[broken]
    out = tmp_path / "out"
    argv = {"fit": ["fit", path, "-o", out, "--epochs", "1", "--workers", "0", "-q"],
            "evaluate": ["evaluate", models["finite"], path, "-q", "--preset", "pfpld"],
            "cache": ["cache", path, "-o", out, "-q"]}[command]
    code, _, err = run(argv, capsys)
    assert code == 1, err
    assert str(path) in err and expect in err, err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("option, says", [
    (["--eye-weight", "nan"], "eye_weight"), (["--pose-weight", "nan"], "pose_weight"),
    (["--pose-weight", "-1"], "pose_weight"), (["--eye-weight", "inf"], "eye_weight"),
    (["--val-fraction", "2"], "val_fraction"), (["--val-fraction", "nan"], "val_fraction"),
    (["--lr", "nan"], "lr"), (["--epochs", "0"], "epochs"), (["--batch-size", "0"], "batch_size"),
    (["--warmup-epochs", "nan"], "warmup_epochs"),
])
def test_fit_refuses_bad_options_before_training(corpus, option, says, tmp_path, capsys):
    """Refused by the parser, from the option's declared range (exit 2, naming the option)."""
    good, _, _ = corpus
    out = tmp_path / "run"
    code, out_text, err = run(["fit", good, "-o", out, "--workers", "0", "-q", *option], capsys)
    assert code == 2 and f"argument {option[0]}" in err, err
    assert "done" not in out_text
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("option, says", [
    (["--mean", "1,2"], "--mean"), (["--scale", "abc"], "--scale"), (["--mean", "nan"], "--mean"),
    (["--scale", "0"], "--scale"), (["--scale", "1,2,3,4"], "--scale"), (["--mean", ""], "--mean"),
])
def test_evaluate_refuses_bad_preprocessing_options(corpus, option, says, capsys):
    """The parser refuses what the options' types exclude (exit 2); a scale of 0 is refused by the model
    loader (exit 1)."""
    good, _, models = corpus
    code, _, err = run(["evaluate", models["finite"], good, "-q", *option], capsys)
    assert code == (1 if option == ["--scale", "0"] else 2) and says in err, err


@pytest.mark.parametrize("model, says", [
    ("nan-output", "not finite"), ("bad-metadata-json", "not valid JSON"), ("metadata-mean-2-values", "metadata 'mean'"),
    ("metadata-scale-text", "metadata 'scale'"),
])
def test_evaluate_refuses_bad_models(corpus, model, says, tmp_path, capsys):
    good, _, models = corpus
    out = tmp_path / "summary.json"
    code, _, err = run(["evaluate", models[model], good, "-q", "-o", out], capsys)
    assert code == 1 and says in err and str(models[model]) in err, err
    assert not out.exists()


@pytest.mark.parametrize("model, says", [
    ("input-nhwc", "NHWC"), ("input-one-channel", "1 channel(s)"), ("input-96-pixels", "height 96"),
    ("input-uint8", "tensor(uint8)"), ("input-3-dims", "3 dimensions"), ("output-10-values", "10 values per face"),
])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_model_is_checked_against_what_it_declares(corpus, model, says, command, tmp_path, capsys):
    good, _, models = corpus
    out = tmp_path / "out"
    argv = {"evaluate": ["evaluate", models[model], good, "-q", "-o", out / "summary.json", "--preset", "pfpld"],
            "predict": ["predict", models[model], _face_image(tmp_path), "-o", out, "--box", "10,10,90,90"]}[command]
    code, _, err = run(argv, capsys)
    assert code == 1 and says in err and str(models[model]) in err, err
    assert not out.exists() or not any(out.iterdir())


def _face_image(tmp_path: Path) -> Path:
    import cv2

    p = tmp_path / "face.jpg"
    cv2.imwrite(str(p), np.full((100, 100, 3), 128, np.uint8))
    return p


def test_a_fixed_batch_model_gives_what_a_dynamic_one_gives(corpus, tmp_path):
    """A model declaring a batch of 4 is fed batches of 4 (the last padded): the same predictions as the
    same model with a dynamic batch, for 7 crops."""
    from pfpld_train.evaluation.evaluate import load_model

    _, _, models = corpus
    crops = np.random.default_rng(0).integers(0, 255, (7, 112, 112, 3)).astype(np.uint8)
    fixed = load_model(models["fixed-batch-4"], channel_order="rgb", mean=0.0, scale=1.0)
    dyn = load_model(models["dynamic-batch"], channel_order="rgb", mean=0.0, scale=1.0)
    assert fixed.fixed_batch == 4 and dyn.fixed_batch is None
    np.testing.assert_array_equal(fixed(crops)[0], dyn(crops)[0])


@pytest.mark.parametrize("damage, says", [
    ("prototxt-junk", "cannot load the detector"), ("caffemodel-junk", "cannot load the detector"),
    ("another-net", "not the RetinaFace detector"),
])
@pytest.mark.parametrize("command", ["predict", "label"])
def test_a_bad_detector_is_named(corpus, shared_data, damage, says, command, tmp_path, capsys):
    import shutil

    _, _, models = corpus
    det = tmp_path / "det"
    shutil.copytree(shared_data / "detectors" / "retinaface_mnet025", det)
    if damage == "prototxt-junk":
        (det / "mnet.prototxt").write_text("layer { junk ]]]\n")
    elif damage == "caffemodel-junk":
        (det / "mnet.caffemodel").write_bytes(b"\x00junk" * 100)
    else:
        shutil.copy(shared_data / "upstream_pfpld" / "pfpld.prototxt", det / "mnet.prototxt")
    out = tmp_path / ("out" if command == "predict" else "labels.parquet")
    argv = ([command, models["finite"], _face_image(tmp_path)] if command == "predict" else
            [command, _face_image(tmp_path), "--model", models["finite"]])
    code, _, err = run(argv + ["-o", out, "--detector", det], capsys)
    assert code == 1 and says in err and str(det) in err, err
    assert not out.exists() or (out.is_dir() and not any(out.iterdir()))


GATE = ("format-newer", "dataset-format-newer", "dataset-version-newer", "dataset-part-listed-twice",
        "dataset-part-copied", "dataset-part-resized")


@pytest.mark.parametrize("broken", GATE)
@pytest.mark.parametrize("command", ["fit", "evaluate", "cache"])
def test_trainer_commands_read_through_the_one_gate(corpus, command, broken, tmp_path, capsys):
    test_trainer_commands_refuse_broken_manifests(corpus, command, broken, tmp_path, capsys)


def test_evaluate_never_writes_over_its_inputs(corpus, tmp_path, capsys):
    good, _, models = corpus
    inp = tmp_path / "in.parquet"
    inp.write_bytes(good.read_bytes())
    for flag in ("-o", "--save-predictions"):
        code, _, err = run(["evaluate", models["finite"], inp, "-q", "--preset", "pfpld", flag, inp], capsys)
        assert code == 1 and "--overwrite" in err and str(inp) in err, err
        assert inp.read_bytes() == good.read_bytes()


def test_evaluate_scores_a_finite_model(corpus, tmp_path, capsys):
    """The corpus's own good inputs work: the tiny model is scored (badly) with exit 0."""
    good, _, models = corpus
    out = tmp_path / "summary.json"
    code, _, err = run(["evaluate", models["finite"], good, "-q", "-o", out, "--preset", "pfpld"], capsys)
    assert code == 0, err
    assert out.exists()


def test_evaluate_with_no_scorable_face_is_an_error(corpus, tmp_path, capsys):
    """Faces whose images are all missing: no NaN summary with exit 0, but an error saying why."""
    _, _, models = corpus
    src = fc.coco_source(tmp_path / "src")  # no image files
    from landmark_unify.ops.build import build_manifest

    m = build_manifest([f"coco={src}"], tmp_path / "m.parquet", progress=False).out
    out = tmp_path / "summary.json"
    code, _, err = run(["evaluate", models["finite"], m, "-q", "-o", out, "--preset", "pfpld"], capsys)
    assert code == 1 and "no face could be scored" in err and "image" in err, err
    assert not out.exists()


def test_data_check_names_the_row_and_point(corpus):
    from landmark_unify.manifest import read_manifest
    from pfpld_train.data.arrays import DataError, FaceArrays

    _, cases, _ = corpus
    with pytest.raises(DataError, match=r"row 0, point \d+ lies beyond 1e\+06 pixels"):
        FaceArrays.from_manifest(read_manifest(cases["valid-point-1e30"][0]))
    with pytest.raises(DataError, match="marked valid but not finite"):
        FaceArrays.from_manifest(read_manifest(cases["valid-point-inf"][0]))
    assert np.isfinite(1e30)


# --- outputs: one door (landmark_unify.outputs) ------------------------------------------------------------------
#
# Each case prepares the user's files in tmp_path, runs a command that must not harm them, and checks: exit 1
# with a message (or exit 0 with the right result), no traceback, every file of the user byte-identical, no
# partial output and no temporary entry left.

def _fake_export(folder: Path, extra: dict | None = None) -> Path:
    """An earlier export folder of this project (marked), optionally with files a person added after."""
    from landmark_unify.outputs import writing

    with writing("pfpld_train export") as tx:
        staged = tx.folder(folder)
        (staged.path("pfpld.onnx")).write_bytes(b"an earlier model")
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def _earlier_cache(corpus, folder: Path, capsys) -> Path:
    good, _, _ = corpus
    assert run(["cache", good, "-o", folder, "-q", "--workers", "1"], capsys)[0] == 0
    return folder


def _case_label_over_photo(t, corpus, capsys):
    photo = fc.photos(t / "p", 1)[0]
    return ["label", photo, "-o", photo, "--model", corpus[2]["finite"], "--preset", "pfpld", "-q"], "is an input"


def _case_label_over_model(t, corpus, capsys):
    photo = fc.photos(t / "p", 1)[0]
    (t / "run").mkdir()
    model = t / "run" / "best.pt"
    model.write_bytes(b"a trained model")
    return ["label", photo, "-o", model, "--model", model, "-q"], "is an input"


def _case_label_into_photo_folder(t, corpus, capsys):
    fc.photos(t / "p", 2)
    return ["label", t / "p", "-o", t / "p" / "labels.parquet", "--model", corpus[2]["finite"], "--preset", "pfpld",
            "-q"], "lies inside"


def _case_cache_over_folder_holding_manifest(t, corpus, capsys):
    good, _, _ = corpus
    (t / "d").mkdir()
    m = t / "d" / "m.parquet"
    m.write_bytes(good.read_bytes())
    (t / "d" / "notes.txt").write_text("my notes")
    return ["cache", m, "-o", t / "d", "--overwrite", "-q"], "replacing the folder would delete it"


def _case_cache_over_user_folder(t, corpus, capsys):
    (t / "d").mkdir()
    (t / "d" / "notes.txt").write_text("my notes")
    return ["cache", corpus[0], "-o", t / "d", "--overwrite", "-q"], "did not write"


def _case_cache_over_earlier_cache(t, corpus, capsys):
    _earlier_cache(corpus, t / "c", capsys)
    return ["cache", corpus[0], "-o", t / "c", "-q"], "--overwrite"


def _case_cache_over_cache_with_notes(t, corpus, capsys):
    _earlier_cache(corpus, t / "c", capsys)
    (t / "c" / "notes.txt").write_text("added by a person")
    return ["cache", corpus[0], "-o", t / "c", "-q", "--overwrite"], "did not write (notes.txt)"


def _case_cache_over_a_file(t, corpus, capsys):
    (t / "c").write_text("a file")
    return ["cache", corpus[0], "-o", t / "c", "-q", "--overwrite"], "not a folder"


def _case_cache_while_another_writes(t, corpus, capsys):
    import landmark_unify.outputs as lo

    lock = lo._Lock(t / "c")  # another run holding the folder (a lock of its own on the same file)
    lock.acquire()
    _case_cache_while_another_writes.held = lock
    return ["cache", corpus[0], "-o", t / "c", "-q"], "being written by another run"


def _case_fit_over_best_pt(t, corpus, capsys):
    (t / "r").mkdir()
    (t / "r" / "best.pt").write_bytes(b"the best model so far")
    return ["fit", corpus[0], "-o", t / "r", "--epochs", "1", "--workers", "0", "-q"], "holds best.pt"


def _case_fit_into_user_folder(t, corpus, capsys):
    (t / "r").mkdir()
    (t / "r" / "notes.txt").write_text("my notes")
    return ["fit", corpus[0], "-o", t / "r", "--epochs", "1", "--workers", "0", "-q"], "did not write"


def _case_predict_into_image_folder(t, corpus, capsys):
    fc.photos(t / "p", 1)
    (t / "p" / "photo0_overlay.png").write_bytes((t / "p" / "photo0.jpg").read_bytes())  # named like an overlay
    return ["predict", corpus[2]["finite"], t / "p" / "photo0_overlay.png", "-o", t / "p", "--box", "10,10,200,200",
            "--preset", "pfpld", "--overwrite"], "replacing the folder would delete it"


def _case_predict_over_user_folder(t, corpus, capsys):
    photo = fc.photos(t / "p", 1)[0]
    (t / "o").mkdir()
    (t / "o" / "notes.txt").write_text("my notes")
    return ["predict", corpus[2]["finite"], photo, "-o", t / "o", "--box", "10,10,200,200", "--preset", "pfpld",
            "--overwrite"], "did not write"


def _case_export_stem_escapes(t, corpus, capsys):
    return ["export", corpus[2]["finite"], "--format", "caffe", "-o", t / "e", "--stem", "../../x"], "--stem"


def _case_export_into_user_folder(t, corpus, capsys):
    (t / "e").mkdir()
    (t / "e" / "pfpld.onnx").write_bytes(b"a model of the user")
    return ["export", corpus[2]["finite"], "--format", "caffe", "-o", t / "e", "--overwrite"], "did not write"


def _case_export_over_earlier_export(t, corpus, capsys):
    _fake_export(t / "e")
    return ["export", corpus[2]["finite"], "--format", "caffe", "-o", t / "e"], "--overwrite"


def _case_export_over_export_with_notes(t, corpus, capsys):
    _fake_export(t / "e", {"README.user.txt": "notes"})
    return ["export", corpus[2]["finite"], "--format", "caffe", "-o", t / "e", "--overwrite"], "did not write"


def _case_quantize_keep_models_over_user_folder(t, corpus, capsys):
    (t / "k").mkdir()
    (t / "k" / "int8.onnx").write_bytes(b"kept by the user")
    return ["quantize-check", corpus[2]["finite"], corpus[0], "--keep-models", t / "k", "--overwrite"], "did not write"


def _case_evaluate_over_model(t, corpus, capsys):
    model = t / "m.onnx"
    model.write_bytes(corpus[2]["finite"].read_bytes())
    return ["evaluate", model, corpus[0], "-q", "--preset", "pfpld", "--save-predictions", model], "--overwrite"


OUTPUT_CASES = {f.__name__.removeprefix("_case_"): f for f in (
    _case_label_over_photo, _case_label_over_model, _case_label_into_photo_folder,
    _case_cache_over_folder_holding_manifest, _case_cache_over_user_folder, _case_cache_over_earlier_cache,
    _case_cache_over_cache_with_notes, _case_cache_over_a_file, _case_cache_while_another_writes,
    _case_fit_over_best_pt, _case_fit_into_user_folder, _case_predict_into_image_folder,
    _case_predict_over_user_folder, _case_export_stem_escapes, _case_export_into_user_folder,
    _case_export_over_earlier_export, _case_export_over_export_with_notes, _case_quantize_keep_models_over_user_folder,
    _case_evaluate_over_model)}


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_outputs_that_would_harm_the_users_files_are_refused(corpus, case, tmp_path, capsys):
    argv, says = OUTPUT_CASES[case](tmp_path, corpus, capsys)
    capsys.readouterr()
    fc.assert_refused_untouched(lambda: run(argv, capsys), tmp_path, says, OUTPUT_CASES[case])
    assert not (tmp_path.parent / "x.onnx").exists() and not (tmp_path.parent.parent / "x.onnx").exists()


@pytest.mark.parametrize("command", ["evaluate", "cache", "fit", "report"])
def test_a_write_that_fails_midway_leaves_the_earlier_outputs(corpus, command, tmp_path, capsys, monkeypatch):
    """A disk that fills up after some outputs were published: exit 1 with the message, the outputs as
    they were before the run (an earlier summary byte-identical), nothing partial."""
    import errno

    import landmark_unify.io as lio

    good, _, models = corpus
    (tmp_path / "earlier.json").write_text('{"an": "earlier summary"}\n')
    argv = {"evaluate": ["evaluate", models["finite"], good, "-q", "--preset", "pfpld", "-o", tmp_path / "earlier.json",
                         "--save-predictions", tmp_path / "p.npz"],
            "cache": ["cache", good, "-o", tmp_path / "c", "-q", "--workers", "1"],
            "fit": ["fit", good, "-o", tmp_path / "r", "--epochs", "1", "--workers", "0", "-q", "--batch-size", "2"],
            "report": None}[command]
    if argv is None:
        from landmark_unify.cli import main as lu_main

        argv = ["report", good, "-o", tmp_path / "rep"]
    real, calls = lio.publish, []

    def full_disk(tmp, path):
        calls.append(path)
        if len(calls) == (1 if command == "cache" else 2):  # cache: its index.json, after the crops
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(tmp, path)

    monkeypatch.setattr(lio, "publish", full_disk)
    before = fc.snapshot(tmp_path)
    if command == "report":
        code = lu_main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert "Traceback" not in err
    else:
        code, _, err = run(argv, capsys)
    assert code == 1 and "No space left" in err, err
    assert fc.snapshot(tmp_path) == before
    assert fc.temporaries(tmp_path) == []


INTERRUPTED = {
    "cache": lambda g, m, t: ["cache", g, "-o", t / "c", "-q", "--workers", "1"],
    "fit": lambda g, m, t: ["fit", g, "-o", t / "r", "--epochs", "2", "--workers", "0", "-q", "--batch-size", "2"],
    "evaluate": lambda g, m, t: ["evaluate", m, g, "-q", "--preset", "pfpld", "-o", t / "s.json", "--save-predictions",
                                 t / "p.npz"],
    "predict": lambda g, m, t: ["predict", m, *fc.photos(t / "p", 2), "-o", t / "o", "--box", "10,10,200,200",
                                "--preset", "pfpld"],
}


@pytest.mark.parametrize("at", [1, 3])
@pytest.mark.parametrize("command", sorted(INTERRUPTED))
def test_ctrl_c_rolls_back_every_output(corpus, command, at, tmp_path, capsys, monkeypatch):
    """Ctrl-C at the ``at``-th file a command publishes: exit 130, ``interrupted; nothing written`` (fit:
    the checkpoints it kept, named), no traceback, the user's files as they were."""
    import landmark_unify.io as lio

    good, _, models = corpus
    argv = INTERRUPTED[command](good, models["finite"], tmp_path)
    real = lio.publish
    calls = fc.interrupt_publish(monkeypatch, at)
    before = fc.snapshot(tmp_path)
    code, _, err = run(argv, capsys)
    if code == 0:  # it published fewer files than that: done, the right result
        assert len(calls) < at and fc.temporaries(tmp_path) == [], err
        return
    assert code == 130 and f"{command}: interrupted; " in err, err
    after = fc.snapshot(tmp_path)
    assert fc.temporaries(tmp_path) == []
    if "kept" in err:  # fit: the checkpoints written before Ctrl-C, named, and a run that resumes
        assert command == "fit" and "last.pt" in err
        assert {k for k in after if k not in before} >= {"r/last.pt"}
        monkeypatch.setattr(lio, "publish", real)
        code, _, err = run(["fit", "-o", tmp_path / "r", "--resume", "--workers", "0", "-q"], capsys)
        assert code == 0, err
    else:
        assert "nothing written" in err and after == before


def test_cache_over_its_own_earlier_cache_with_overwrite(corpus, tmp_path, capsys):
    good, _, _ = corpus
    _earlier_cache(corpus, tmp_path / "c", capsys)
    before = good.read_bytes()
    code, out, err = run(["cache", good, "-o", tmp_path / "c", "-q", "--overwrite", "--workers", "1"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "c" / "index.json").read_text())["count"] == 4
    assert good.read_bytes() == before and fc.temporaries(tmp_path) == []


def test_a_moved_run_resumes_where_it_is(corpus, tmp_path, capsys):
    good, _, _ = corpus
    first = tmp_path / "first"
    code, _, err = run(["fit", good, "-o", first, "--epochs", "2", "--max-steps", "1", "--batch-size", "2",
                        "--workers", "0", "-q"], capsys)
    assert code == 0, err
    moved = tmp_path / "moved"
    first.rename(moved)
    code, _, err = run(["fit", "-o", moved, "--resume", "--workers", "0", "-q"], capsys)
    assert code == 0, err
    assert not first.exists(), "the resumed run wrote into the folder it was moved from"
    assert json.loads((moved / "config.json").read_text())["config"]["out"] == str(moved)
    assert (moved / "last.pt").is_file() and fc.temporaries(tmp_path) == []


#: How many output cases (refused harms, failures midway, an earlier output replaced, a moved run) and
#: interrupt cases this corpus holds (reported in docs/guides/reliability.md).
OUTPUT_CORPUS_SIZE = len(OUTPUT_CASES) + 4 + 1 + 1
INTERRUPT_CORPUS_SIZE = 2 * len(INTERRUPTED)

#: How many bad-input cases this corpus holds.
CORPUS_SIZE = (3 * len(MANIFESTS) + 10 + 6 + 4 + 2 + 1 + 2
               + 12 + 1 + 6          # models against what they declare (6 x evaluate, predict), fixed batch, detectors
               + 3 * len(GATE)       # the one manifest gate, through fit, evaluate and cache
               + 1 + 1 + 1           # workers that die: cache worker, full disk, data loading worker (below)
               + 2)                  # label over file system oddities (below)


# --- workers that die: the command ends with a message, in bounded time, and leaves nothing ------------------

def _die(job):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel kills a worker that is out of memory or hits SIGBUS


@pytest.mark.timeout(120)  # a hang guard: before, the cache waited forever on a dead worker
def test_cache_ends_when_a_worker_dies(corpus, tmp_path, capsys, monkeypatch):
    import pfpld_train.data.cache as cache

    good, _, _ = corpus
    monkeypatch.setattr(cache, "_cache_worker", _die)  # the forked workers inherit it
    out = tmp_path / "cache"
    code, _, err = run(["cache", good, "-o", out, "--workers", "2", "-q"], capsys)
    assert code == 1 and "worker process died" in err, err
    assert not out.exists() and not (tmp_path / "cache.partial").exists()


def test_cache_on_a_full_disk_is_refused_before_any_work(corpus, tmp_path, capsys, monkeypatch):
    import errno
    import os

    good, _, _ = corpus

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    out = tmp_path / "cache"
    code, _, err = run(["cache", good, "-o", out, "--workers", "2", "-q"], capsys)
    assert code == 1 and "No space left on device" in err and "crops.u8" in err, err
    assert not out.exists() and not (tmp_path / "cache.partial").exists()


_DYING_LOADER = """
import os, signal, sys, time
import numpy as np
import torch
from pfpld_train.data import sampler
from pfpld_train.data.arrays import DataError

class Dying:  # its second item kills the worker process that loads it
    def __len__(self):
        return 8
    def __getitem__(self, i):
        if i == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return np.zeros(2, np.float32)

sampler._collate = torch.utils.data.default_collate
loader = sampler.make_loader(Dying(), 1, torch.utils.data.SequentialSampler(range(8)), workers=1)
try:
    for _ in loader:
        pass
except DataError as exc:
    print("DataError:", exc)
"""


def test_a_dead_data_loading_worker_is_named(tmp_path):
    """In a fresh process (forking a test process that holds other libraries' threads may deadlock the child
    before it runs anything, which is not what is tested here)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", _DYING_LOADER], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert "DataError:" in done.stdout and "worker process died" in done.stdout, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("oddity", ["name-not-utf8", "folder-link-loop"])
def test_label_names_file_system_oddities(corpus, oddity, tmp_path, capsys):
    import os

    _, _, models = corpus
    photos = tmp_path / "photos"
    photos.mkdir()
    _face_image(photos)
    if oddity == "name-not-utf8":
        with open(os.path.join(os.fsencode(photos), b"face\xff.jpg"), "wb") as f:
            f.write((photos / "face.jpg").read_bytes())
        says = "not UTF-8"
    else:
        (photos / "again").symlink_to("..")
        says = "loop"
    out = tmp_path / "labels.parquet"
    code, _, err = run(["label", photos, "--model", models["finite"], "-o", out], capsys)
    assert code == 1 and says in err, err
    assert not out.exists()


def test_the_reliability_guide_counts_these_cases():
    """docs/guides/reliability.md gives the number of output and interrupt cases of both corpora."""
    import re

    spec = importlib.util.spec_from_file_location("lu_corpus", _corpus.with_name("test_fault_corpus.py"))
    lu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lu)
    guide = (Path(__file__).resolve().parents[3] / "docs" / "guides" / "reliability.md").read_text(encoding="utf-8")
    counts = [int(n) for n in re.findall(r"^\| [^|]+ \| (\d+) \|", guide, re.M)]
    assert counts[:4] == [len(OUTPUT_CASES) + len(lu.LU_OUTPUT_CASES),
                          OUTPUT_CORPUS_SIZE - len(OUTPUT_CASES) + lu.OUTPUT_CORPUS_SIZE - len(lu.LU_OUTPUT_CASES),
                          lu.INTERRUPT_CORPUS_SIZE, INTERRUPT_CORPUS_SIZE], counts
