"""How often do the training sets' leads have quality problems? The quality check (``ecg_shared.quality``) over every
PTB-XL and CinC 2017 recording: how many have a flat lead (none: so no model was trained on one, and a model reading
one is not judged) and how many a lead flagged noisy (many PTB-XL records, mostly by baseline wander: so a noisy lead
alone does not stop a model). About 15 s.

    .venv/bin/python services/training/scripts/experiments/lead_quality_scan.py
"""

from __future__ import annotations

from collections import Counter

from ecg_shared.formats import read_ecg
from ecg_shared.quality import assess_quality, lead_problems
from ecg_shared.settings import get_settings


def main() -> None:
    data = get_settings().data_dir
    for dataset in ("ptbxl", "cinc2017"):
        counts, problems = Counter(), Counter()
        for header in sorted((data / dataset).glob("*.hea")):
            report = assess_quality(read_ecg(header))
            flagged = {lead: lead_problems(remarks) for lead, remarks in report.leads.items()}
            counts["recordings"] += 1
            counts["unusable"] += not report.usable
            counts["usable, a lead with a problem"] += report.usable and any(flagged.values())
            counts["a flat lead"] += any(p.startswith("flat line") for ps in flagged.values() for p in ps)
            for remarks in flagged.values():
                problems.update(p.split(":")[0] for p in remarks)
        print(f"{dataset}: {dict(counts)}; lead problems: {dict(problems)}")


if __name__ == "__main__":
    main()
