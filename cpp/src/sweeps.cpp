// The frame-wise bidirectional sweep order of StableVSR (svsr/contract/sweeps.py).
//
// Per timestep one sweep visits every frame; sweeps alternate direction, forward first. The first
// frame of a sweep runs without the TCM; every later frame is guided by the previous frame's x0 of
// the same timestep, warped with fwd[j-1] (forward sweeps) or bwd[j-1] (backward sweeps).
#include "svsr/host.hpp"

namespace svsr {

bool sweep_forward(int step) { return step % 2 == 0; }

std::vector<int> sweep_order(int num_frames, int step) {
    std::vector<int> order(static_cast<size_t>(num_frames > 0 ? num_frames : 0));
    for (int k = 0; k < num_frames; ++k) order[k] = sweep_forward(step) ? k : num_frames - 1 - k;
    return order;
}

std::vector<FrameCall> frame_calls(int num_frames, int num_steps) {
    std::vector<FrameCall> calls;
    for (int step = 0; step < num_steps; ++step) {
        const std::vector<int> order = sweep_order(num_frames, step);
        for (int position = 0; position < num_frames; ++position) {
            FrameCall c;
            c.step = step;
            c.position = position;
            c.frame = order[position];
            c.forward = sweep_forward(step);
            c.flow_index = position == 0 ? -1 : position - 1;
            calls.push_back(c);
        }
    }
    return calls;
}

}  // namespace svsr
