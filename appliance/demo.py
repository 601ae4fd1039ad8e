"""The demo workspace: a synthetic but realistic credit-risk data set.

Customers apply for loans through a year; each application row carries numeric
features, two categorical ones, a sensitive attribute (``gender``, never a model input)
and a ``default`` label drawn from a logistic model of the features, so the signal is
real. In the last three months an economic shock appears: incomes fall, utilisation
and late payments rise and defaults follow, which drift monitoring should catch.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# The demo's workspace: the applications table under a contract, a view of the
# applicant's features (numeric and categorical, never the sensitive attribute) that
# models train on, and a training spec that searches gradient-boosted trees.
WORKSPACE = """\
# The demo workspace (falaj apply reads this file; see the README's tour)
entities:
  customer: {join_key: customer_id, description: a loan applicant}
tables:
  credit_applications:
    entity: customer_id
    event_time: event_time
    contract:
      policy: quarantine
      unique_key: true
      columns:
        age: {nullable: false, min: 18, max: 100}
        income: {nullable: false, min: 0}
        debt_to_income: {min: 0, max: 1.5}
        credit_utilization: {min: 0, max: 1}
        default: {allowed: [0, 1]}
  credit_contacts:   # personal data: encrypted per customer, erased by crypto-shredding
    entity: customer_id
    event_time: event_time
    personal: [full_name, email, phone]
views:
  applicant:
    table: credit_applications
    columns: [age, income, employment_years, loan_amount, debt_to_income,
              credit_utilization, num_credit_lines, num_late_payments, loan_purpose, region]
training:
  credit_risk_gbt:
    model: credit_risk
    table: credit_applications
    label: default
    sensitive: gender
    family: gbt
    search: {strategy: halving, trials: 9, timeout: 5m, seed: 7}
    gates:
      champion: {metric: roc_auc, margin: 0.0}
      fairness: {demographic_parity: 0.1, equalized_odds: 0.1}
    intended_use: >-
      Ranks loan applications by their risk of default, for review by a credit officer.
      Not for automated refusals.
  credit_risk_retrain:
    model: credit_risk
    table: credit_applications  # the pipeline's training_set step gives it a fresh set
    label: default
    sensitive: gender
    family: linear
    gates:
      champion: {metric: roc_auc, margin: -0.01}
      fairness: {demographic_parity: 0.1, equalized_odds: 0.1}
    intended_use: >-
      Ranks loan applications by their risk of default, for review by a credit officer.
      Not for automated refusals.
# A drift alert on the live model retrains it on everything known so far and releases
# the new version as a 10% canary, promoted or rolled back by its evidence.
pipelines:
  retrain_on_drift:
    description: retrain credit_risk when its live inputs drift, release as a canary
    on_drift: {model: credit_risk}
    steps:
      - validate: {table: credit_applications, min_rows: 1000}
      - training_set: {table: credit_applications, label: default,
                       features: ["applicant:*"], keep: [gender]}
      - train: {spec: credit_risk_retrain}
      - evaluate
      - gates
      - register
      - release: {strategy: canary, percent: 10,
                  policy: {min_requests: 200, max_error_rate: 0.01, max_p99_ms: 250}}
      - decide: {timeout: 7d}
"""

START = datetime(2025, 1, 1)
YEAR_S = 365 * 24 * 3600
DRIFT_FROM = 0.75  # share of the year after which the shock shows


def credit_risk(n_rows: int = 60_000, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    n_customers = max(1, n_rows // 6)
    customer = rng.integers(100_000, 100_000 + n_customers, n_rows)
    offset = np.sort(rng.uniform(0, YEAR_S, n_rows))
    late = offset > DRIFT_FROM * YEAR_S  # the shock period
    event_time = np.datetime64(START, "us") + (offset * 1e6).astype("timedelta64[us]")

    # Per-customer traits, so the same customer looks alike across applications.
    c_idx = customer - 100_000
    c_age = rng.integers(21, 70, n_customers)
    c_gender = rng.choice(np.array(["female", "male"]), n_customers, p=[0.45, 0.55])
    c_region = rng.choice(
        np.array(["abu_dhabi", "dubai", "sharjah", "al_ain", "northern"]), n_customers
    )
    age = c_age[c_idx]
    gender = c_gender[c_idx]
    region = c_region[c_idx]

    income = rng.lognormal(np.log(14_000), 0.45, n_rows) * (1 + 0.01 * (age - 21))
    income = np.where(late, income * 0.82, income)
    employment_years = np.clip(rng.gamma(2.0, 3.0, n_rows), 0, age - 18)
    loan_amount = np.round(rng.lognormal(np.log(60_000), 0.7, n_rows), -2)
    debt_to_income = np.clip(rng.beta(2, 5, n_rows) + np.where(late, 0.06, 0.0), 0, 1.5)
    credit_utilization = np.clip(rng.beta(2, 3, n_rows) + np.where(late, 0.12, 0.0), 0, 1)
    num_credit_lines = rng.poisson(4, n_rows)
    num_late_payments = rng.poisson(np.where(late, 1.1, 0.6))
    purpose = rng.choice(np.array(["car", "home", "education", "personal", "business"]), n_rows,
                         p=[0.3, 0.2, 0.1, 0.3, 0.1])  # fmt: skip

    z = (
        -2.2
        - 0.9 * (np.log(income) - np.log(14_000))
        + 2.4 * (debt_to_income - 0.3)
        + 1.8 * (credit_utilization - 0.4)
        + 0.45 * num_late_payments
        - 0.05 * employment_years
        + 0.35 * (np.log(loan_amount) - np.log(60_000))
        - 0.01 * (age - 40)
        + np.where(purpose == "business", 0.4, 0.0)
    )
    default = (rng.uniform(size=n_rows) < 1 / (1 + np.exp(-z))).astype(np.int64)

    return pa.table(
        {
            "customer_id": customer.astype(np.int64),
            "event_time": pa.array(event_time, pa.timestamp("us")),
            "age": age.astype(np.int64),
            "income": np.round(income, 2),
            "employment_years": np.round(employment_years, 1),
            "loan_amount": loan_amount,
            "debt_to_income": np.round(debt_to_income, 4),
            "credit_utilization": np.round(credit_utilization, 4),
            "num_credit_lines": num_credit_lines.astype(np.int64),
            "num_late_payments": num_late_payments.astype(np.int64),
            "loan_purpose": purpose,
            "region": region,
            "gender": gender,
            "default": default,
        }
    )


CONTACTS = "credit_contacts"
FIRST = ("Aisha", "Omar", "Fatima", "Khalid", "Maryam", "Rashid", "Noura", "Saeed", "Layla",
         "Hamdan", "Priya", "Arjun", "Maria", "John", "Chen", "Sara")  # fmt: skip
LAST = ("Al Mansoori", "Al Nuaimi", "Al Shamsi", "Al Ketbi", "Haddad", "Nair", "Santos",
        "Smith", "Wang", "Khan", "Al Dhaheri", "Rahman")  # fmt: skip


def contacts(data: pa.Table, seed: int = 11) -> pa.Table:
    """One synthetic contact row per customer (name, e-mail, phone), dated at their first
    application: the demo's personal data, declared ``personal`` in the workspace."""
    rng = np.random.default_rng(seed)
    ids, first = np.unique(data["customer_id"].to_numpy(), return_index=True)
    n = len(ids)
    given = np.array(FIRST)[rng.integers(0, len(FIRST), n)]
    family = np.array(LAST)[rng.integers(0, len(LAST), n)]
    names = [f"{g} {f}" for g, f in zip(given, family, strict=True)]
    emails = [f"{g.lower()}.{f.lower().replace(' ', '')}{i % 1000}@example.ae"
              for g, f, i in zip(given, family, ids, strict=True)]  # fmt: skip
    phones = [f"+971 5{d} {p // 1000:03d} {p % 1000:04d}"
              for d, p in zip(rng.integers(0, 9, n), rng.integers(0, 10**6, n), strict=True)]  # fmt: skip
    return pa.table({
        "customer_id": pa.array(ids, pa.int64()),
        "event_time": data["event_time"].take(pa.array(first)),
        "full_name": names, "email": emails, "phone": phones,
    })  # fmt: skip


def live_traffic(data: pa.Table, n: int) -> pa.Table:
    """Up to ``n`` applications from the shock months, one per customer, in time order:
    the traffic the demo replays against the deployed model."""
    shock = np.datetime64(START, "us") + np.timedelta64(int(DRIFT_FROM * YEAR_S * 1e6), "us")
    late = data.filter(pa.array(data["event_time"].to_numpy() >= shock))
    _, first = np.unique(late["customer_id"].to_numpy(), return_index=True)
    return late.take(pa.array(np.sort(first)[:n]))


def write(path: Path, n_rows: int = 60_000, seed: int = 7) -> Path:
    """Write the data set as Parquet, or as CSV when the name ends in .csv."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = credit_risk(n_rows, seed)
    if path.suffix.lower() == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path
