#!/bin/bash
# The same target as examples/scrape_throughput.rs, served by serve_exposition.py (which also
# answers remote-write POSTs with 204). Needs Debian victoria-metrics (vmagent) and curl.
# Usage: host/agent/bench/vmagent_cpu.sh [SERIES] [SECONDS]
# Measures vmagent's CPU seconds per million scraped samples: one 100k-series target, 1s interval.
set -e
cd "$(dirname "$0")"; WORK=$(mktemp -d)
SERIES=${1:-100000}; DURATION=${2:-30}
python3 serve_exposition.py $SERIES 19911 & SRV=$!
python3 serve_exposition.py 1 19912 & RW=$!
sleep 3
cat > $WORK/p.yml <<YML
global: {scrape_interval: 1s, scrape_timeout: 900ms}
scrape_configs:
  - job_name: bench
    static_configs: [{targets: ['127.0.0.1:19911']}]
YML

vmagent -promscrape.config=$WORK/p.yml -remoteWrite.url=http://127.0.0.1:19912/api/v1/write -remoteWrite.tmpDataPath=$WORK/vmq -httpListenAddr=127.0.0.1:19913 -loggerLevel=ERROR & VM=$!
sleep 5
h0=$(curl -s 127.0.0.1:19911/hits); t0=$(awk '{print $14+$15}' /proc/$VM/stat)
sleep $DURATION
h1=$(curl -s 127.0.0.1:19911/hits); t1=$(awk '{print $14+$15}' /proc/$VM/stat)
kill $VM $SRV $RW; wait 2>/dev/null || true
python3 -c "h=$h1-$h0; cpu=($t1-$t0)/100; s=h*$SERIES; print(f'vmagent: scrapes={h} samples={s} cpu={cpu:.2f}s cpu_s_per_million={cpu/(s/1e6):.3f}')"
rm -rf "$WORK"
