"""Will everyone be told in time? The rollout forecast from schedule, quota and sending rate.

Pure arithmetic: no Prefect, no state DB. `rollout.report.brand_forecast` reads the inputs (who
is pending, how fast recent waves sent); this module turns them into the time of the last mail,
the verdict against the mandatory date, and what would make a late plan on time.

The model, which is what the scheduled waves do:

- Waves start at the slots of the brand's cron `schedule`, read on Europe/Berlin wall-clock time
  as Prefect's scheduler reads it: 08:00 stays 08:00 across the DST changes; a time the spring
  change skips (02:30 on the last Sunday of March) runs an hour later, a time the autumn change
  repeats runs once, the first time.
- A wave mails the next `daily_quota` pending customers (0: all of them), one after the other at
  the rate cap (none: all at the slot). A wave still sending at the next slot holds the brand's
  lock, so that slot is lost.
- The PIN is asked for from the first minute of the mandatory date, so a mail is on time only if
  it goes out before 00:00 (Berlin) of that day: a wave at 08:00 ON the mandatory date is late.

The package: `calendar` (cron slots in Berlin time, the deadline), `waves` (simulating them) and
`forecast` (the inputs, the verdict and how it reads).
"""

from rollout.plan.calendar import BERLIN, TIMEZONE, deadline, start_of, wave_slots
from rollout.plan.forecast import (
    Backlog,
    Forecast,
    Rate,
    forecast,
    forecast_markdown,
    measured_rate,
    summary_line,
)

__all__ = [
    "BERLIN",
    "TIMEZONE",
    "Backlog",
    "Forecast",
    "Rate",
    "deadline",
    "forecast",
    "forecast_markdown",
    "measured_rate",
    "start_of",
    "summary_line",
    "wave_slots",
]
