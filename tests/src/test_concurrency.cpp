// Threads on the CPU backend: one plan shared by 8 threads, plans created and destroyed concurrently,
// per-thread error messages, and memory that stays flat over 100k plan lifetimes. CI runs the
// [concurrency] tests under ThreadSanitizer and every CPU test under ASan/LSan (tests/fuzz/sanitizers.sh).
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tensors.h"

using flashsci::test::fresh_seed;
using flashsci::test::HostTensor;

namespace {

constexpr int kThreads = 8;

// Sanitizers change how memory is reused (ASan's quarantine), so the RSS bound holds only without them.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

struct Problem {
    int64_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim;
    flashsci_dtype_t dtype;
    flashsci_mask_t mask;
    size_t q_count() const { return size_t(batch * seqlen_q * heads_q * head_dim); }
    size_t kv_count() const { return size_t(batch * seqlen_k * heads_kv * head_dim); }
    size_t lse_count() const { return size_t(batch * heads_q * seqlen_q); }
};

flashsci_status_t configure(flashsci_plan_t plan, const Problem& p) {
    flashsci_status_t s = flashsci_plan_set_shape(plan, p.batch, p.seqlen_q, p.seqlen_k, p.heads_q, p.heads_kv, p.head_dim);
    if (s == FLASHSCI_STATUS_SUCCESS) s = flashsci_plan_set_dtype(plan, p.dtype);
    if (s == FLASHSCI_STATUS_SUCCESS) s = flashsci_plan_set_mask(plan, p.mask);
    return s;
}

struct Inputs {
    HostTensor q, k, v;
    Inputs(const Problem& p, std::mt19937_64& rng)
        : q(p.dtype, p.q_count()), k(p.dtype, p.kv_count()), v(p.dtype, p.kv_count()) {
        q.fill_random(rng), k.fill_random(rng), v.fill_random(rng);
    }
};

struct Outputs {
    HostTensor o;
    std::vector<float> lse;
    explicit Outputs(const Problem& p) : o(p.dtype, p.q_count()), lse(p.lse_count()) { o.poison(); }
    bool operator==(const Outputs& other) const {
        return std::memcmp(o.data(), other.o.data(), o.size_bytes()) == 0 &&
               std::memcmp(lse.data(), other.lse.data(), lse.size() * sizeof(float)) == 0;
    }
};

flashsci_status_t forward(flashsci_plan_t plan, const Inputs& in, Outputs& out) {
    return flashsci_forward(plan, in.q.data(), in.k.data(), in.v.data(), out.o.data(), out.lse.data(), nullptr, 0,
                            nullptr);
}

// Resident set size in bytes, from /proc/self/statm.
long resident_bytes() {
    long pages_total = 0, pages_resident = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return -1;
    const int read = std::fscanf(f, "%ld %ld", &pages_total, &pages_resident);
    std::fclose(f);
    return read == 2 ? pages_resident * 4096L : -1;
}

}  // namespace

TEST_CASE("concurrency: one CPU plan used by 8 threads at once matches sequential runs bit for bit",
          "[concurrency]") {
    std::mt19937_64 rng(fresh_seed());
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT32, FLASHSCI_DTYPE_BFLOAT16}) {
        const Problem p{2, 77, 130, 4, 2, 40, dtype, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
        const Inputs in(p, rng);
        flashsci_plan_t plan = nullptr;
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(configure(plan, p) == FLASHSCI_STATUS_SUCCESS);
        Outputs sequential(p);
        REQUIRE(forward(plan, in, sequential) == FLASHSCI_STATUS_SUCCESS);

        constexpr int kRepeats = 3;
        std::vector<Outputs> outputs;
        for (int t = 0; t < kThreads * kRepeats; ++t) outputs.emplace_back(p);
        std::atomic<int> failures{0}, ready{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                ++ready;
                while (ready.load() < kThreads) std::this_thread::yield();  // start together
                for (int r = 0; r < kRepeats; ++r)
                    if (forward(plan, in, outputs[size_t(t * kRepeats + r)]) != FLASHSCI_STATUS_SUCCESS) ++failures;
            });
        for (std::thread& t : threads) t.join();
        flashsci_plan_destroy(plan);
        CHECK(failures == 0);
        for (size_t i = 0; i < outputs.size(); ++i) {
            INFO("thread " << i / kRepeats << " repeat " << i % kRepeats);
            CHECK(outputs[i] == sequential);
        }
    }
}

TEST_CASE("concurrency: plans created, used and destroyed on 8 threads at once", "[concurrency]") {
    const Problem p{1, 33, 65, 2, 1, 16, FLASHSCI_DTYPE_FLOAT16, FLASHSCI_MASK_CAUSAL};
    std::mt19937_64 rng(fresh_seed());
    const Inputs in(p, rng);
    Outputs reference(p);
    {
        flashsci_plan_t plan = nullptr;
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(configure(plan, p) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(forward(plan, in, reference) == FLASHSCI_STATUS_SUCCESS);
        flashsci_plan_destroy(plan);
    }
    constexpr int kCycles = 40;
    std::atomic<int> failures{0}, mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            Outputs out(p);
            for (int c = 0; c < kCycles; ++c) {
                flashsci_plan_t plan = nullptr;
                if (flashsci_plan_create(&plan, FLASHSCI_BACKEND_AUTO) != FLASHSCI_STATUS_SUCCESS) {
                    ++failures;
                    continue;
                }
                flashsci_backend_t backend = FLASHSCI_BACKEND_AUTO;
                flashsci_plan_get_backend(plan, &backend);
                if (backend == FLASHSCI_BACKEND_CPU) {  // AUTO may pick a GPU where one exists: host buffers then do not fit
                    if (configure(plan, p) != FLASHSCI_STATUS_SUCCESS || forward(plan, in, out) != FLASHSCI_STATUS_SUCCESS)
                        ++failures;
                    else if (!(out == reference))
                        ++mismatches;
                }
                flashsci_plan_destroy(plan);
            }
        });
    for (std::thread& t : threads) t.join();
    CHECK(failures == 0);
    CHECK(mismatches == 0);
}

TEST_CASE("concurrency: each thread keeps its own last error while others fail differently", "[concurrency]") {
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            flashsci_plan_t plan = nullptr;
            if (flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) != FLASHSCI_STATUS_SUCCESS) {
                ++wrong;
                return;
            }
            const std::string expected = "batch (" + std::to_string(-t - 1) + ")";
            for (int i = 0; i < 2000; ++i) {
                if (flashsci_plan_set_shape(plan, -t - 1, 1, 1, 1, 1, 8) != FLASHSCI_STATUS_INVALID_VALUE ||
                    std::string(flashsci_last_error()).find(expected) == std::string::npos)
                    ++wrong;
                if (flashsci_plan_set_shape(plan, 1, 1, 1, 1, 1, 8) != FLASHSCI_STATUS_SUCCESS) ++wrong;
            }
            flashsci_plan_destroy(plan);
        });
    for (std::thread& t : threads) t.join();
    CHECK(wrong == 0);
}

TEST_CASE("leaks: 100k plan lifetimes leave memory flat", "[concurrency][leak]") {
    const Problem p{1, 17, 17, 2, 1, 8, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_MASK_CAUSAL};
    std::mt19937_64 rng(fresh_seed());
    const Inputs in(p, rng);
    Outputs out(p);
    auto lifetime = [&](bool with_forward) {
        flashsci_plan_t plan = nullptr;
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(configure(plan, p) == FLASHSCI_STATUS_SUCCESS);
        const char* name = nullptr;
        REQUIRE(flashsci_plan_get_kernel_name(plan, &name) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_shape(plan, 0, 1, 1, 1, 1, 8) == FLASHSCI_STATUS_INVALID_VALUE);  // a failing call too
        if (with_forward) REQUIRE(forward(plan, in, out) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_destroy(plan) == FLASHSCI_STATUS_SUCCESS);
    };
    for (int i = 0; i < 1000; ++i) lifetime(i % 10 == 0);  // warm up the allocator
    const long before = resident_bytes();
    constexpr int kLifetimes = 100000;
    for (int i = 0; i < kLifetimes; ++i) lifetime(i % 100 == 0);
    const long after = resident_bytes();
    INFO("RSS before " << before << " B, after " << after << " B");
    REQUIRE(before > 0);
    // A leak of even 16 bytes per plan would add 1.6 MB; sanitizer runs leave the verdict to LeakSanitizer.
    constexpr long kSlack = 1 << 20;
    if (!kSanitized) CHECK(after - before < kSlack);
}
