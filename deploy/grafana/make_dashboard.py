#!/usr/bin/env python3
"""Writes maskedkd.json, the Grafana dashboard: pool, per-teacher and
per-job rows. Run it after changing a panel; tests/deploy_test.py checks
that the committed JSON is what this writes, that every expression parses
(promtool) and that it names only metrics the binaries export or the rules
record."""
import json
import os

# Stats: one number each, across the top.
STATS = [
    ("Teacher compute saved by masking (pool)", "namespace:mkd_teacher_flops_saved:ratio_rate5m", "percentunit"),
    ("Teacher compute saved by masking (per job)", "job_id:mkd_student_teacher_flops_saved:ratio_rate5m{job_id=~\"$job\"}", "percentunit"),
    ("Builds running", "count by (binary, version, revision) (mkd_build_info)", "short"),
]

PANELS = [
    ("Pool", [
        ("Pool throughput (images/s through teacher forwards)", "namespace:mkd_teacher_batch_images:rate1m", "images/s", "short"),
        ("Teacher FLOPs: spent and saved by masking (per s)", ["namespace:mkd_teacher_flops:rate1m", "namespace:mkd_teacher_flops_saved:rate1m"], ["spent", "saved"], "flops"),
        ("Teachers by state", "mkd_coordinator_teachers", "{{state}}", "short"),
        ("Jobs, and jobs waiting for a teacher", ["mkd_coordinator_jobs", "mkd_coordinator_waiting_jobs"], ["jobs", "waiting"], "short"),
        ("Pool utilisation (served / measured capacity)", "namespace:mkd_coordinator_utilisation:ratio", "utilisation", "percentunit"),
        ("Teacher queue time p50 / p99", ["namespace:mkd_teacher_queue_seconds:p50", "namespace:mkd_teacher_queue_seconds:p99"], ["p50", "p99"], "s"),
    ]),
    ("Per teacher", [
        ("Queue time p99", "instance:mkd_teacher_queue_seconds:p99{instance=~\"$teacher\"}", "{{instance}}", "s"),
        ("Batch fill (tokens per forward / budget)", "instance:mkd_teacher_batch_fill:ratio{instance=~\"$teacher\"}", "{{instance}}", "percentunit"),
        ("Queued and in-flight micro-batches", ["mkd_teacher_queued_requests{instance=~\"$teacher\"}", "mkd_teacher_in_flight_requests{instance=~\"$teacher\"}"], ["queued {{instance}}", "in flight {{instance}}"], "short"),
        ("Forward pass time (mean)", "rate(mkd_teacher_compute_seconds_sum{instance=~\"$teacher\"}[1m]) / rate(mkd_teacher_compute_seconds_count{instance=~\"$teacher\"}[1m])", "{{instance}}", "s"),
        ("Answers by code (per s)", "sum by (instance, code) (rate(mkd_teacher_requests_total{instance=~\"$teacher\"}[1m]))", "{{instance}} {{code}}", "reqps"),
        ("Error ratio", "instance:mkd_teacher_errors:ratio_rate5m{instance=~\"$teacher\"}", "{{instance}}", "percentunit"),
        ("GPU memory peak", "mkd_teacher_device_memory_peak_bytes{instance=~\"$teacher\"}", "{{instance}}", "bytes"),
    ]),
    ("Per job", [
        ("Training speed (img/s, 5 min mean, all ranks)", "job_id:mkd_student_images_per_second:avg5m{job_id=~\"$job\"}", "{{job_id}}", "short"),
        ("Teacher compute saved by masking", "job_id:mkd_student_teacher_flops_saved:ratio_rate5m{job_id=~\"$job\"}", "{{job_id}}", "percentunit"),
        ("Pipeline bubble (time waiting on teachers)", "job_id:mkd_student_bubble_fraction:avg5m{job_id=~\"$job\"}", "{{job_id}}", "percentunit"),
        ("Step time: measured and planned", ["mkd_student_step_seconds{job_id=~\"$job\"}", "mkd_student_predicted_step_seconds{job_id=~\"$job\"}"], ["measured {{job_id}} {{rank}}", "predicted {{job_id}} {{rank}}"], "s"),
        ("Micro-batches per step (m)", "mkd_student_micro_batches{job_id=~\"$job\"}", "{{job_id}} {{rank}}", "short"),
        ("Teacher round trip per micro-batch (mean)", "rate(mkd_student_teacher_round_trip_seconds_sum{job_id=~\"$job\"}[1m]) / rate(mkd_student_teacher_round_trip_seconds_count{job_id=~\"$job\"}[1m])", "{{job_id}} {{rank}}", "s"),
        ("Loss", "mkd_student_loss{job_id=~\"$job\"}", "{{job_id}} {{rank}}", "short"),
        ("Failovers and retries (per min)", ["increase(mkd_student_teacher_failovers_total{job_id=~\"$job\"}[1m])", "increase(mkd_student_teacher_retries_total{job_id=~\"$job\"}[1m])"], ["failovers {{job_id}} {{rank}}", "retries {{job_id}} {{rank}}"], "short"),
]),
]


def dashboard():
    panels, y, pid = [], 0, 1
    ds = {"type": "prometheus", "uid": "${datasource}"}
    for i, (title, expr, unit) in enumerate(STATS):
        panels.append({
            "type": "stat", "title": title, "id": pid, "datasource": ds,
            "gridPos": {"x": i * 8, "y": y, "w": 8, "h": 4},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}},
            "targets": [{"refId": "A", "datasource": ds, "expr": expr,
                         "legendFormat": "{{job_id}}" if "job_id" in expr else ""}],
        })
        pid += 1
    y += 4
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
            var("job", 'label_values(mkd_student_step, job_id)'),
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
