"""The report's drift sections: per candidate format the verdict (pass, inconclusive with the clips
needed, fail), the llama.cpp-style vocabulary statistics with the clips that dominate, the
vision-side drift next to the language-side one, and the latency-history verdicts."""

from __future__ import annotations

from typing import Any

from core.base.results import Results
from core.report.tables import Mark, Section, Table

DRIFT_NOTE = ("Per candidate format against the reference. Label KL is over the candidate labels; vocab KL over "
              "the full vocabulary at the answer position, stored as top-k + the rest's mass: a lower bound, exact "
              "when the reference's mass outside the common tokens ('ref rest') is 0. Vision compares the vision "
              "tower's output embeddings per frame group with the reference's (HF only): cosine and relative error. "
              "INCONCLUSIVE: nothing exceeded its limit, but the clip set is too small to see some limit with power "
              "0.8; the line below the table names the clips needed.")


def _num(x: Any, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def _status(rec: dict[str, Any]) -> str | Mark:
    status = rec.get("status") or ("pass" if rec.get("passed") else "fail")
    return {"fail": Mark("FAIL", "regression"), "inconclusive": Mark("inconclusive", "change")}.get(status, "pass")


def drift_rows(rec: dict[str, Any]) -> list[str | Mark]:
    r = rec.get("report") or {}
    v = (r.get("vocab") or {}).get("answer") or {}
    vis = r.get("vision_summary") or {}
    dominant = ", ".join(f"{d['clip']} {100 * d['share']:.0f}%" for d in (r.get("vocab") or {}).get("dominant") or [])
    kl = "—" if not v else f"{v['kl_mean']:.3g} ± {_num(v.get('kl_se'))}"
    return [rec.get("engine", "?"), rec.get("task", "?"), _status(rec), str(r.get("n", "—")),
            f"{r.get('n', 0) - r.get('agreement', 0)}", _num(r.get("kl_mean")), kl,
            _num((v.get("kl_percentiles") or {}).get("p99")), _num(v.get("kl_max")),
            "—" if not v else f"{100 * v['same_top_rate']:.1f}% ± {100 * v['same_top_se']:.1f}%",
            _num(v.get("delta_p_rms")), _num(v.get("max_ref_rest"), ".2g"),
            _num(vis.get("cos_min"), ".6f"), _num(vis.get("rel_err_max"), ".3g"), dominant or "—"]


def drift_section(results: Results) -> Section | None:
    """One row per drift verdict; then what each inconclusive verdict would need."""
    if not results.drift:
        return None
    headers = ["engine", "task", "verdict", "clips", "flips", "label KL mean", "vocab KL mean ± SE", "vocab KL p99",
               "vocab KL max", "same top token", "Δp RMS", "ref rest", "vision cos min", "vision rel err max",
               "clips dominating vocab KL"]
    rows = [drift_rows(rec) for rec in results.drift]
    sec = Section("Drift against the reference", [DRIFT_NOTE], [Table(headers, rows)])
    for rec in results.drift:
        verdict = rec.get("verdict") or {}
        for f in verdict.get("failures") or []:
            sec.paragraphs.append(f"{rec['engine']} ({rec['task']}): FAIL {f}")
        if verdict.get("status") == "inconclusive":
            for s in verdict.get("sensitivity") or []:
                if not s.get("conclusive"):
                    need = (f"{s['clips_needed']} clips would see it" if s.get("clips_needed")
                            else "no practical set sees it")
                    seen = "nothing" if s.get("detectable") is None else f"{s['detectable']:.3g}"
                    sec.paragraphs.append(f"{rec['engine']} ({rec['task']}): inconclusive on {s['metric']}: "
                                          f"{s['n']} clips detect {seen}, the limit is {s['limit']:.3g}; {need}.")
    return sec


def history_section(results: Results) -> Section | None:
    """The latency-history verdict of every timed cell that has one (``--history``)."""
    recs = [r for r in results.speed() if r.get("history")]
    if not recs:
        return None
    kinds = {"fail": "regression", "warn": "change", "clock change": "change", "faster": "improvement"}
    rows = []
    for r in recs:
        h = r["history"]
        status = Mark(h["status"], kinds[h["status"]]) if h["status"] in kinds else h["status"]
        rows.append([str(r.get("cell")), str(r.get("gpu_class")), _num(h.get("median_s"), ".4g"),
                     _num(h.get("baseline_s"), ".4g"), _num(h.get("delta_pct"), "+.1f"),
                     _num(h.get("noise_pct"), ".1f"),
                     _runs(h), status, ", ".join(h.get("clock_changes") or []) or "—"])
    return Section("Latency against the history", [
        "Each timed cell against the median of up to 10 earlier runs on the same GPU class (SQLite history): warn "
        "beyond noise + 5%, fail beyond noise + 10%; noise is twice the robust spread (1.4826 x MAD) of those earlier "
        "medians, never this run's own round spread. Earlier runs at other GPU clock settings or power limits (NVML) "
        "are left out and named; with fewer than 5 earlier runs at this run's settings there is no verdict "
        "('insufficient history', or 'clock change' when runs at other settings were left out)."],
        [Table(["cell", "GPU class", "median s", "history s", "change %", "noise ±%", "runs", "verdict",
                "clock changes"], rows)])


def _runs(h: dict[str, Any]) -> str:
    """Earlier runs behind the verdict, with those left out for other clock settings."""
    text = str(h.get("runs"))
    if h.get("status") in ("insufficient history", "clock change") and h.get("min_runs"):
        text += f" of {h['min_runs']} needed"
    if h.get("excluded_runs"):
        text += f" ({h['excluded_runs']} left out: other clocks)"
    return text


def clock_lines(results: Results) -> list[str]:
    """The GPU clocks the timed cells ran at (NVML), once per distinct setting."""
    seen = []
    for r in results.speed():
        c = r.get("gpu_clocks") or {}
        if c:
            line = (f"GPU clocks ({r.get('gpu_name') or r.get('gpu_class')}): SM {c.get('sm_mhz', '?')} MHz "
                    f"(max {c.get('sm_max_mhz', '?')}, application {c.get('sm_app_mhz', '?')}), memory "
                    f"{c.get('mem_mhz', '?')} MHz, power limit {c.get('power_limit_w', '?')} W.")
            if line not in seen:
                seen.append(line)
    return seen
