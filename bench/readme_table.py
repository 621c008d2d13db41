"""Prints the Performance table of docs/performance.md from target/bench/report.json (the
figures of one `make bench` run, exactly as measured): `python3 bench/readme_table.py [report.json]`."""

import json
import sys


def main(path="target/bench/report.json"):
    r = json.load(open(path))
    m = r["machine"]
    out = [
        f"Measured {r['date'][:10]} on {m['nproc']} cores × {m['cpu']}, Linux {m['kernel']}, "
        f"command `{r['command']}` ({r['benchSeconds'] / 60:.1f} min wall), tree at `{r['commit']}`:",
        "",
        "| figure | measured | ratio / beside its minimum |",
        "|---|---|---|",
    ]
    for name, f in r["init"].items():
        rust, py = f["rust"]["initMs"], f["python"]["initMs"]
        out.append(
            f"| init, {name} | {rust['median']:.1f} ms (min {rust['min']:.1f}, max {rust['max']:.1f}); "
            f"Python {py['median']:.0f} ms (min {py['min']:.0f}, max {py['max']:.0f}) | "
            f"{f['initRatio']:.0f}× faster (goal ≥ 40×) |")
    for name, f in r["init"].items():
        rust, py = f["rust"]["peakRssMiB"], f["python"]["peakRssMiB"]
        out.append(
            f"| peak RSS at init, {name} | {rust['median']:.1f} MiB; Python {py['median']:.1f} MiB | "
            f"{f['rssRatio']:.1f}× smaller (goal ≥ 5×, < 16 MiB) |")
    out.append(
        f"| peak RSS, 25-license onboarding | {r['peakRssOnboarding25MiB']:.1f} MiB | "
        f"{r['peakRssOnboarding25RatioToPythonInit']:.1f}× below the Python peer's init peak (goal < 16 MiB) |")
    for o in r["onboarding"]:
        c, w, k = o["cold"], o["entitledWarm"], o["entitledCold"]
        n = o.get("newWarm")
        runs = "/".join(str(x["roundTrips"]) for x in c.get("runs", [c]))
        nxt = (f"; next new account in the warm container {n['calls']} calls "
               f"({n['calls'] / o['minCalls']:.2f}×) / {n['roundTrips']} rt" if n else "")
        out.append(
            f"| onboarding, {o['licenses']} license(s), {o['delayMs']} ms/call, median of "
            f"{o.get('repeats', 1)} | "
            f"{c['wallMs']:.0f} ms, {c['calls']} calls, {c['roundTrips']} round trips (runs {runs}){nxt}; "
            f"entitled: warm {w['calls']} calls / {w['roundTrips']} rt / {w['wallMs']:.0f} ms, cold "
            f"{k['calls']} calls / {k['roundTrips']} rt / {k['wallMs']:.0f} ms | calls "
            f"{c['calls'] / o['minCalls']:.2f}× of {o['minCalls']}; round trips "
            f"{c['roundTrips'] / o['minRoundTrips']:.2f}× of {o['minRoundTrips']}; "
            f"entitled warm ≤ {o['maxEntitledCalls']} calls: {'yes' if w['calls'] <= o['maxEntitledCalls'] else 'no'} |")
    b = r["backfill"]
    out.append(
        f"| backfill, {b['accounts']} accounts × {b['licenses']} licenses, {b['containers']} instances, {b['rateLimitPerSecond']}/s per operation | "
        f"{b['accountsPerSecond']:.2f} accounts/s ({b['wallSeconds']:.1f} s; {b['calls']} calls, {b['throttledCalls']} "
        f"throttled, {b['redeliveredRecords']} records redelivered, {b['deadLettered']} dead-lettered; peak RSS "
        f"{b['peakRssMiB']:.1f} MiB) | {b['ratioToBound']:.2f}× of the bound {b['boundAccountsPerSecond']:.1f} accounts/s "
        f"({b['limitingCalls']} {b['limitingOperation']} / {b['rateLimitPerSecond']} per s) |")
    n = b.get("newAccount")
    if n:
        out.append(
            f"| a new account vended a quarter into that backfill (own queue and instance) | ACTIVE in "
            f"{n['ownLaneSeconds']} s; {n['baselineSeconds']} s with no backfill; behind "
            f"{n['recordsAheadInSharedQueue']} records on one shared queue: {n['sharedQueueSeconds']} s | "
            f"{n['ownLaneSeconds'] - n['baselineSeconds']:.2f} s later than alone, within one backfill batch "
            f"({n['medianBatchSeconds']} s median): {'yes' if n['ownLaneSeconds'] - n['baselineSeconds'] <= n['medianBatchSeconds'] else 'no'} |")
    for name, mib in r["bootstrapSize"].items():
        size = mib if isinstance(mib, (int, float)) else mib["MiB"]
        out.append(f"| bootstrap size, {name} | {size:.2f} MiB | {size / 8:.2f}× of the 8 MiB goal |")
    print("\n".join(out))


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
    else:
        main(*sys.argv[1:])
