from test_promote import QUICK, _add_copy


def test_debug(planted_cfg, state_home):
    from mothbrain.core.ledger import open_ledger
    from mothbrain.evaluate.stage import run_eval

    cfg = planted_cfg(*QUICK)
    led = open_ledger(cfg)
    run_eval(cfg, "v0001")
    out = [
        (
            "v0001",
            led.get("v0001")["eval"]["voice_ppl"],
            led.get("v0001")["eval"]["voice_ppl_base"],
            led.get("v0001")["eval"]["heldout_overlap"],
        )
    ]
    for noise in (0.5, 10.0):
        v = _add_copy(cfg, "v0001", noise=noise)
        run_eval(cfg, v)
        out.append((noise, led.get(v)["eval"]["voice_ppl"], led.get(v)["eval"].get("voice_samples")))
    open("/tmp/dbg/out.txt", "w").write(repr(out))
