"""The worker's Prometheus metrics, and the HTTP endpoint that serves them."""

from prometheus_client import Counter, Gauge, Histogram
from relctl.domain.guard_eval import GuardOutcome

PROCESSED = Counter("relctl_worker_evaluations_processed_total", "Evaluations folded into windows")
REJECTED = Counter("relctl_worker_evaluations_rejected_total", "Evaluations sent to the DLQ")
BATCH_SECONDS = Histogram("relctl_worker_batch_processing_seconds",
                          "Time to process one batch of evaluations",
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
EVENT_AGE = Gauge("relctl_worker_event_age_seconds",
                  "Age of the newest evaluation processed (processing lag)")
CONSUMER_LAG = Gauge("relctl_worker_consumer_lag", "Records behind the high watermark",
                     ["partition"])
GUARD_OUTCOME = Gauge("relctl_guard_rule_outcome",
                      "Latest guard outcome (0 Inconclusive, 1 Passed, 2 Pending, 3 Failed, "
                      "4 Error)", ["rollout", "rule"])
DECISIONS = Counter("relctl_guard_decisions_total", "Automatic decisions issued", ["action"])
VERDICTS = Counter("relctl_guard_verdicts_published_total",
                   "Verdict changes published on relctl.verdicts", ["outcome"])
ALERTS = Counter("relctl_alerts_total", "Alert transitions published", ["kind", "rule"])
COHORT_WINDOW = Gauge(
    "relctl_worker_cohort_window_evaluations",
    "Evaluations in this worker's per-tenant windows (last 15 min), summed per task, release "
    "and cohort; measure is count or an outcome/flag count", ["task", "release", "cohort",
                                                              "measure"])
HELD = Gauge("relctl_worker_evaluations_held",
             "Evaluations waiting for the control index to learn their release")
TENANT_WINDOWS = Gauge("relctl_worker_tenant_windows",
                       "Active (task, release, tenant, cohort, arm) windows held in memory")
OUTCOME_CODE = {GuardOutcome.INCONCLUSIVE: 0, GuardOutcome.PASSED: 1, GuardOutcome.PENDING: 2,
                GuardOutcome.FAILED: 3, GuardOutcome.ERROR: 4}
CONTROL_EVENTS = Gauge("relctl_worker_control_events", "Control events applied to the index")
CONTROL_MALFORMED = Counter("relctl_worker_control_malformed_total",
                            "Control records that could not be read and were skipped")
ROLLOUT_STATE = Gauge("relctl_worker_rollout_state",
                      "Rollout state as this worker's control index sees it (0 Planned, "
                      "1 Running, 2 Paused, 3 Frozen, 4 RolledBack, 5 Completed)", ["rollout"])
DUPLICATES = Counter("relctl_guard_duplicates_total",
                     "Evaluations delivered again (producer retries, redeliveries after a "
                     "crash) and not counted again")
COUNTED = Counter("relctl_guard_evaluations_counted_total",
                  "Evaluations stage 2 counted into the guard's buckets (each identity once)")
TOO_OLD = Counter("relctl_guard_evaluations_too_old_total",
                  "Evaluations whose bucket had left the guard's retention when stage 2 saw "
                  "them (not counted)")
PENDING_PAIRS = Gauge("relctl_guard_pending_shadow_pairs",
                      "Shadow-mode runs waiting for their call's other arm, per task", ["task"])
TRACE_VIOLATIONS = Counter(
    "relctl_guard_trace_violations_total",
    "Evaluations whose prompt, model, sampling parameters or blueprint contradict the release "
    "they claim (not counted as its evidence)", ["task", "release", "field"])
WINDOW_EVALUATIONS = Gauge(
    "relctl_guard_window_evaluations",
    "Evaluations counted in the guard's live buckets (its retention), per task, release and "
    "produced arm", ["task", "release", "arm"])
STATE_CODE = {"Planned": 0, "Running": 1, "Paused": 2, "Frozen": 3, "RolledBack": 4,
              "Completed": 5}


def worker_metrics(port: int) -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1")
