#!/usr/bin/env python3
"""Writes maskedkd.json, the Grafana dashboard: pool, per-teacher and
per-job rows. Run it after changing a panel; tests/deploy_test.py checks
that the committed JSON is what this writes, that every expression parses
(promtool) and that it names only metrics the binaries export or the rules
record."""
import json
import os

PANELS = [
    ("Pool", [
        ("Pool throughput (images/s through teacher forwards)", "maskedkd:pool_images:rate1m", "images/s", "short"),
        ("Teacher FLOPs: spent and saved by masking (per s)", ["maskedkd:pool_flops:rate1m", "maskedkd:pool_flops_saved:rate1m"], ["spent", "saved"], "flops"),
        ("Teachers by state", "mkd_coordinator_teachers", "{{state}}", "short"),
        ("Jobs, and jobs waiting for a teacher", ["mkd_coordinator_jobs", "mkd_coordinator_waiting_jobs"], ["jobs", "waiting"], "short"),
        ("Pool utilisation (served / measured capacity)", "maskedkd:pool_utilisation:ratio", "utilisation", "percentunit"),
        ("Teacher queue time p50 / p99", ["maskedkd:teacher_queue_seconds:p50", "maskedkd:teacher_queue_seconds:p99"], ["p50", "p99"], "s"),
    ]),
    ("Per teacher", [
        ("Queue time p99", "maskedkd:teacher_queue_seconds_p99:by_instance{instance=~\"$teacher\"}", "{{instance}}", "s"),
        ("Batch fill (tokens per forward / budget)", "maskedkd:teacher_batch_fill:by_instance{instance=~\"$teacher\"}", "{{instance}}", "percentunit"),
        ("Queued and in-flight micro-batches", ["mkd_teacher_queued_requests{instance=~\"$teacher\"}", "mkd_teacher_in_flight_requests{instance=~\"$teacher\"}"], ["queued {{instance}}", "in flight {{instance}}"], "short"),
        ("Forward pass time (mean)", "rate(mkd_teacher_compute_seconds_sum{instance=~\"$teacher\"}[1m]) / rate(mkd_teacher_compute_seconds_count{instance=~\"$teacher\"}[1m])", "{{instance}}", "s"),
        ("Answers by code (per s)", "sum by (instance, code) (rate(mkd_teacher_requests_total{instance=~\"$teacher\"}[1m]))", "{{instance}} {{code}}", "reqps"),
        ("Error ratio", "maskedkd:teacher_error_ratio:by_instance{instance=~\"$teacher\"}", "{{instance}}", "percentunit"),
        ("GPU memory peak", "mkd_teacher_device_memory_peak_bytes{instance=~\"$teacher\"}", "{{instance}}", "bytes"),
    ]),
    ("Per job", [
        ("Training speed (img/s, 5 min mean)", "maskedkd:job_images_per_second:avg5m{instance=~\"$job\"}", "{{instance}}", "short"),
        ("Pipeline bubble (time waiting on teachers)", "maskedkd:job_bubble_fraction:avg5m{instance=~\"$job\"}", "{{instance}}", "percentunit"),
        ("Step time: measured and planned", ["mkd_student_step_seconds{instance=~\"$job\"}", "mkd_student_predicted_step_seconds{instance=~\"$job\"}"], ["measured {{instance}}", "predicted {{instance}}"], "s"),
        ("Micro-batches per step (m)", "mkd_student_micro_batches{instance=~\"$job\"}", "{{instance}}", "short"),
        ("Teacher round trip per micro-batch (mean)", "rate(mkd_student_teacher_round_trip_seconds_sum{instance=~\"$job\"}[1m]) / rate(mkd_student_teacher_round_trip_seconds_count{instance=~\"$job\"}[1m])", "{{instance}}", "s"),
        ("Loss", "mkd_student_loss{instance=~\"$job\"}", "{{instance}}", "short"),
        ("Failovers and retries (per min)", ["increase(mkd_student_teacher_failovers_total{instance=~\"$job\"}[1m])", "increase(mkd_student_teacher_retries_total{instance=~\"$job\"}[1m])"], ["failovers {{instance}}", "retries {{instance}}"], "short"),
    ]),
]


def dashboard():
    panels, y, pid = [], 0, 1
    ds = {"type": "prometheus", "uid": "${datasource}"}
    for row, items in PANELS:
        panels.append({"type": "row", "title": row, "id": pid, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (title, exprs, legends, unit) in enumerate(items):
            exprs = exprs if isinstance(exprs, list) else [exprs]
            legends = legends if isinstance(legends, list) else [legends]
            panels.append({
                "type": "timeseries", "title": title, "id": pid, "datasource": ds,
                "gridPos": {"x": (i % 3) * 8, "y": y + (i // 3) * 8, "w": 8, "h": 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": chr(ord("A") + k), "datasource": ds, "expr": e, "legendFormat": l}
                            for k, (e, l) in enumerate(zip(exprs, legends))],
            })
            pid += 1
        y += ((len(items) + 2) // 3) * 8

    def var(name, query):
        return {"name": name, "type": "query", "datasource": ds, "refresh": 2, "includeAll": True,
                "multi": True, "current": {"text": "All", "value": "$__all"},
                "query": {"query": query, "refId": name}, "definition": query}

    return {
        "title": "maskedkd", "uid": "maskedkd", "schemaVersion": 38, "version": 1,
        "tags": ["maskedkd"], "timezone": "utc", "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "current": {}, "label": "Prometheus"},
            var("teacher", 'label_values(mkd_teacher_batches_total, instance)'),
            var("job", 'label_values(mkd_student_step, instance)'),
        ]},
        "panels": panels,
    }


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "maskedkd.json")
    with open(out, "w") as f:
        json.dump(dashboard(), f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
