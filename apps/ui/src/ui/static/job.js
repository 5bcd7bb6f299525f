// A job's loss chart (uPlot): polls the job's loss while it runs and redraws with every new point.
import uPlot from "./vendor/uPlot.esm.js";

const holder = document.getElementById("loss-chart");
const counter = document.getElementById("loss-points");
const status = document.getElementById("job-status");
const ACTIVE = new Set(["validating_files", "queued", "running"]);

function columns(series) {
  // One x axis (steps) for both curves; a step without a value is a gap.
  const steps = [...new Set([...series.train, ...series.eval].map(([step]) => step))].sort((a, b) => a - b);
  const train = new Map(series.train);
  const held = new Map(series.eval);
  return [steps, steps.map((s) => train.get(s) ?? null), steps.map((s) => held.get(s) ?? null)];
}

export function lossChart(element, data) {
  return new uPlot(
    {
      width: Math.max(320, element.clientWidth || 640),
      height: 260,
      scales: { x: { time: false } },
      series: [
        { label: "step" },
        { label: "training loss", stroke: "#1f5fbf", width: 2, spanGaps: true },
        { label: "held-out loss", stroke: "#b3401b", width: 2, spanGaps: true },
      ],
      axes: [{ label: "step" }, { label: "loss" }],
    },
    data,
    element,
  );
}

async function poll(chart) {
  const response = await fetch(holder.dataset.source, { headers: { Accept: "application/json" } });
  if (!response.ok) return true;
  const body = await response.json();
  const data = columns(body);
  chart.setData(data);
  const points = body.train.length + body.eval.length;
  counter.textContent = String(points);
  counter.dataset.points = String(points);
  status.textContent = body.status;
  status.dataset.status = body.status;
  return ACTIVE.has(body.status);
}

if (holder) {
  const chart = lossChart(holder, [[], [], []]);
  const tick = async () => {
    if (await poll(chart)) setTimeout(tick, 1000);
  };
  tick();
}
