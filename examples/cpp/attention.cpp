// The C++ version through flashsci.hpp (RAII plan, chained setters, exceptions).
//
//   cmake -S examples/cpp -B build-example -DCMAKE_PREFIX_PATH=<prefix> && cmake --build build-example
//
// SPDX-License-Identifier: BSD-3-Clause
#include <flashsci.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

int main() try {
    const flashsci::Shape shape{2, 100, 300, 8, 2, 64};  // decoding-style: 100 new rows over 300 keys, GQA 8:2
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    auto random = [&](std::size_t n) {
        std::vector<float> x(n);
        for (auto& e : x) e = normal(rng);
        return x;
    };
    const auto q = random(shape.q_elements()), k = random(shape.kv_elements()), v = random(shape.kv_elements());
    std::vector<float> o(shape.q_elements()), lse(shape.lse_elements());

    std::printf("libflashsci %s\n", flashsci::version_string().c_str());
    flashsci::Plan plan(flashsci::Backend::cpu);
    plan.set_shape(shape).set_dtype(flashsci::Dtype::float32).set_mask(flashsci::Mask::causal_bottom_right);
    std::printf("kernel %s, workspace %zu bytes\n", plan.kernel_name(), plan.workspace_size());
    plan.forward(q.data(), k.data(), v.data(), o.data(), lse.data());

    // The last query row sees every key: its LSE is finite and at least the largest scaled score.
    std::printf("lse of the last row of head 0: %.4f\n", lse[shape.seqlen_q - 1]);
    const bool dense_finite = std::isfinite(lse[shape.seqlen_q - 1]);

    // The same tokens as a variable-length batch: three sequences of 37, 63 and 100 queries over 150, 150 and
    // 300 keys, packed along one token axis without padding (lse: [heads_q, total_q]).
    const flashsci::VarlenShape packed{3, 200, 600, 100, 300, 8, 2, 64};
    const std::vector<std::int32_t> cu_seqlens_q{0, 37, 100, 200}, cu_seqlens_k{0, 150, 300, 600};
    plan.set_varlen_shape(packed);
    plan.forward_varlen(q.data(), k.data(), v.data(), o.data(), lse.data(), cu_seqlens_q.data(), cu_seqlens_k.data());
    std::printf("varlen: lse of the last token of head 0: %.4f\n", lse[packed.total_q - 1]);

    try {
        plan.set_softmax_scale(-1.0f);
    } catch (const flashsci::Error& e) {  // the status and the library's message
        std::printf("set_softmax_scale(-1) -> status %d: %s\n", static_cast<int>(e.status()), e.message().c_str());
    }
    return dense_finite && std::isfinite(lse[packed.total_q - 1]) ? 0 : 1;
} catch (const flashsci::Error& e) {
    std::fprintf(stderr, "flashsci: %s\n", e.what());
    return 1;
}
