#include "coordinator/planner.h"

#include <algorithm>

namespace mkd::coordinator {
namespace {

// Least squares y = a + s*x over points; with one distinct x (or a negative
// a), a line through the origin.
Cost Fit(const std::vector<std::pair<double, double>>& points) {
  Cost c;
  if (points.empty()) return c;
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& [x, y] : points) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double n = static_cast<double>(points.size());
  const double var = sxx - sx * sx / n;
  if (var > 1e-12 * std::max(1.0, sxx)) {
    c.per_image = (sxy - sx * sy / n) / var;
    c.fixed = (sy - c.per_image * sx) / n;
  }
  if (var <= 1e-12 * std::max(1.0, sxx) || c.fixed < 0 || c.per_image < 0) {
    c.fixed = 0;
    c.per_image = sxx > 0 ? std::max(0.0, sxy / sxx) : 0;
  }
  return c;
}

// One device for student and teacher. The forwards are queued back to back
// and run first; a request arrives after them (half the latency), so the
// teacher's services follow; each backward waits for its answer and for
// the device. Nothing the teacher computes overlaps the student.
StepPrediction PredictSharedStep(const StepModel& model, const std::vector<double>& rows) {
  const size_t m = rows.size();
  double device = 0, busy = 0;
  std::vector<double> arrive(m), answer(m);
  for (size_t i = 0; i < m; ++i) {
    const double f = model.forward.At(rows[i]);
    device += f;
    busy += f;
    arrive[i] = device + model.latency / 2;
  }
  for (size_t i = 0; i < m; ++i) {
    device = std::max(device, arrive[i]) + model.service.At(rows[i]);
    answer[i] = device + model.latency / 2;
  }
  for (size_t i = 0; i < m; ++i) {
    const double g = model.backward.At(rows[i]);
    device = std::max(device, answer[i]) + g;
    busy += g;
  }
  StepPrediction p;
  p.step_s = device;
  p.bubble = device > 0 ? std::max(0.0, (device - busy) / device) : 0;
  return p;
}

}  // namespace

StepPrediction PredictStep(const StepModel& model, int64_t batch, int m) {
  std::vector<double> rows(m);
  for (int i = 0; i < m; ++i) rows[i] = static_cast<double>(batch / m + (i < batch % m ? 1 : 0));
  if (model.shared_device) return PredictSharedStep(model, rows);
  // Phase 1: forwards back to back; each request travels half the latency,
  // waits for the server (which serves this job first in, first out), and
  // its answer travels back.
  double t = 0, server_free = 0, busy = 0;
  std::vector<double> answer(m);
  for (int i = 0; i < m; ++i) {
    const double f = model.forward.At(rows[i]);
    t += f;
    busy += f;
    const double start = std::max(t + model.latency / 2, server_free);
    server_free = start + model.service.At(rows[i]);
    answer[i] = server_free + model.latency / 2;
  }
  // Phase 2: backwards in order, each once its answer is in.
  for (int i = 0; i < m; ++i) {
    const double g = model.backward.At(rows[i]);
    t = std::max(t, answer[i]) + g;
    busy += g;
  }
  StepPrediction p;
  p.step_s = t;
  p.bubble = t > 0 ? std::max(0.0, (t - busy) / t) : 0;
  return p;
}

StepModel FitStepModel(const std::vector<TimingSample>& samples) {
  std::vector<std::pair<double, double>> fwd, bwd, srv;
  double latency_sum = 0, weight = 0;
  for (const TimingSample& s : samples) {
    fwd.emplace_back(s.images, s.forward_s);
    bwd.emplace_back(s.images, s.backward_s);
    srv.emplace_back(s.images, s.service_s);
    latency_sum += std::max(0.0, s.round_trip_s - s.service_s);
    weight += 1;
  }
  StepModel model;
  model.forward = Fit(fwd);
  model.backward = Fit(bwd);
  model.service = Fit(srv);
  model.latency = weight > 0 ? latency_sum / weight : 0;
  return model;
}

Plan BestPlan(const StepModel& model, int64_t batch, int max_m) {
  const int top = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(max_m, batch)));
  Plan best;
  best.m = 1;
  best.prediction = PredictStep(model, batch, 1);
  for (int m = 2; m <= top; ++m) {
    StepPrediction p = PredictStep(model, batch, m);
    if (p.step_s < best.prediction.step_s * 0.99) {
      best.m = m;
      best.prediction = p;
    }
  }
  return best;
}

std::vector<int> ExploreCandidates(int64_t batch, int max_m) {
  std::vector<int> out;
  for (int m : {1, 2, 4, 8}) {
    if (m <= max_m && m <= batch) out.push_back(m);
  }
  return out;
}

}  // namespace mkd::coordinator
