// Reliability of the CUDA backend through the public API: pointers the backend cannot use are rejected
// (also during graph capture), one plan serves 8 threads on 8 streams, plans live and die concurrently,
// a captured forward replays 100 times bit-identically, and extreme inputs (scores of 1e4, NaN and Inf,
// seqlen 128k and 1M) behave as flashsci.h documents — on the general path and, where they exist, sm90 and sm80.
#include <atomic>
#include <memory>

#include "gpu_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;

namespace {

const Path kGeneral{"general", "cuda_general"};
const Path kSm90{"sm90", "sm90_"};
const Path kSm80{"sm80", "sm80_"};
const Path kAuto{"auto", ""};
constexpr int kThreads = 8;

// The paths to test: always general; sm90 and sm80 where this device and build have them.
std::vector<Path> paths() {
    std::vector<Path> all{kGeneral};
    if (fast_path_available()) all.push_back(kSm90);  // else it warns: the general path only
    if (sm80_available()) all.push_back(kSm80);
    return all;
}

// The Hopper path takes fp16/bf16 only.
bool half_only(const Path& path) { return std::string(path.force) == "sm90"; }

// A tensor-core path: a masked key's non-finite v may reach O there, which the redo then recomputes.
bool tensor_cores(const Path& path) { return std::string(path.force) == "sm90" || std::string(path.force) == "sm80"; }

// A plan on one CUDA path with its inputs on the device; forwards into caller-owned device outputs.
class DeviceProblem {
public:
    DeviceProblem(const Path& path, const Case& c, const HostTensor& in) : c_(c), pl_(place(c)) {
        {
            const ScopedEnvironment force("FLASHSCI_KERNEL", path.force);  // read at plan creation
            plan_ = std::make_unique<Plan>(FLASHSCI_BACKEND_CUDA);
        }
        configure(*plan_, c, pl_);
        workspace_bytes_ = checked_workspace_bytes(path, *plan_);
        input_ = std::make_unique<DeviceBuffer>(in.size_bytes());
        REQUIRE_CUDA(cudaMemcpy(input_->get(), in.data(), in.size_bytes(), cudaMemcpyHostToDevice));
    }

    // Device outputs (poisoned) and a workspace of their own.
    struct Outputs {
        std::unique_ptr<DeviceBuffer> o, lse, workspace;
    };
    Outputs make_outputs() const {
        Outputs out{std::make_unique<DeviceBuffer>(o_bytes()), std::make_unique<DeviceBuffer>(lse_bytes()),
                    std::make_unique<DeviceBuffer>(workspace_bytes_)};
        poison(out, nullptr);
        REQUIRE_CUDA(cudaDeviceSynchronize());
        return out;
    }
    void poison(const Outputs& out, cudaStream_t stream) const {
        REQUIRE_CUDA(cudaMemsetAsync(out.o->get(), 0xff, o_bytes(), stream));
        REQUIRE_CUDA(cudaMemsetAsync(out.lse->get(), 0xff, lse_bytes(), stream));
    }

    // No REQUIRE inside: safe on any thread.
    flashsci_status_t forward(const Outputs& out, cudaStream_t stream) const {
        const size_t bytes = dtype_bytes(c_.dtype);
        unsigned char* in = input_->get();
        return flashsci_forward(*plan_, in + pl_.q_offset * bytes, in + pl_.k_offset * bytes, in + pl_.v_offset * bytes,
                                out.o->get(), reinterpret_cast<float*>(out.lse->get()), out.workspace->get(),
                                workspace_bytes_, stream);
    }

    gpu::Outputs fetch(const Outputs& out) const {
        gpu::Outputs host = poisoned_outputs(c_, pl_);
        REQUIRE_CUDA(cudaDeviceSynchronize());
        REQUIRE_CUDA(cudaMemcpy(host.o.data(), out.o->get(), o_bytes(), cudaMemcpyDeviceToHost));
        REQUIRE_CUDA(cudaMemcpy(host.lse.data(), out.lse->get(), lse_bytes(), cudaMemcpyDeviceToHost));
        return host;
    }

    flashsci_plan_t plan() const { return *plan_; }
    const Placement& placement() const { return pl_; }
    size_t workspace_bytes() const { return workspace_bytes_; }
    unsigned char* input() const { return input_->get(); }

private:
    size_t o_bytes() const { return output_bytes(c_, pl_); }
    size_t lse_bytes() const { return lse_count(c_) * sizeof(float); }

    Case c_;
    Placement pl_;
    std::unique_ptr<Plan> plan_;
    std::unique_ptr<DeviceBuffer> input_;
    size_t workspace_bytes_ = 0;
};

bool identical(const gpu::Outputs& a, const gpu::Outputs& b) {
    return a.o.size_bytes() == b.o.size_bytes() && std::memcmp(a.o.data(), b.o.data(), a.o.size_bytes()) == 0 &&
           a.lse.size() == b.lse.size() && std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)) == 0;
}

HostTensor random_input(const Case& c, const Placement& pl, std::mt19937_64& rng) {
    HostTensor in(c.dtype, pl.input_count);
    in.fill_random(rng);
    return in;
}

void require_rejected(flashsci_status_t status, const std::string& fragment) {
    INFO("status " << flashsci_status_string(status) << ", message: " << flashsci_last_error());
    CHECK(status == FLASHSCI_STATUS_INVALID_VALUE);
    CHECK(std::string(flashsci_last_error()).find(fragment) != std::string::npos);
}

}  // namespace

TEST_CASE("reliability: host and other-device pointers are rejected, also during graph capture", "[gpu][quick]") {
    const Case c{FLASHSCI_DTYPE_FLOAT32, {1, 65, 65, 2, 1, 64}, FLASHSCI_MASK_CAUSAL};
    std::mt19937_64 rng(fresh_seed());
    const Placement pl = place(c);
    const HostTensor in = random_input(c, pl, rng);
    const DeviceProblem problem(kGeneral, c, in);
    const auto out = problem.make_outputs();
    const size_t bytes = dtype_bytes(c.dtype);
    unsigned char* d_in = problem.input();
    const void *q = d_in + pl.q_offset * bytes, *k = d_in + pl.k_offset * bytes, *v = d_in + pl.v_offset * bytes;
    void* o = out.o->get();
    float* lse = reinterpret_cast<float*>(out.lse->get());
    const flashsci_plan_t plan = problem.plan();

    std::vector<float> host(pl.input_count + pl.output_count);  // ordinary host memory
    void* pinned = nullptr;
    REQUIRE_CUDA(cudaMallocHost(&pinned, host.size() * sizeof(float)));
    const auto free_pinned = std::unique_ptr<void, decltype(&cudaFreeHost)>(pinned, &cudaFreeHost);

    require_rejected(flashsci_forward(plan, host.data(), k, v, o, lse, nullptr, 0, nullptr), "q (");
    require_rejected(flashsci_forward(plan, q, host.data(), v, o, lse, nullptr, 0, nullptr), "not CUDA memory");
    require_rejected(flashsci_forward(plan, q, k, v, host.data(), lse, nullptr, 0, nullptr), "o (");
    require_rejected(flashsci_forward(plan, q, k, v, o, host.data(), nullptr, 0, nullptr), "lse (");
    require_rejected(flashsci_forward(plan, q, k, pinned, o, lse, nullptr, 0, nullptr), "v (");
    require_rejected(flashsci_forward(plan, q, k, pinned, o, lse, nullptr, 0, nullptr), "page-locked host memory");
    CHECK(problem.fetch(out).o.is_poisoned());  // nothing was enqueued

    int devices = 0;
    REQUIRE_CUDA(cudaGetDeviceCount(&devices));
    if (devices >= 2) {
        int current = 0;
        REQUIRE_CUDA(cudaGetDevice(&current));
        const int other = current == 0 ? 1 : 0;
        REQUIRE_CUDA(cudaSetDevice(other));
        void* foreign = nullptr;
        const cudaError_t allocated = cudaMalloc(&foreign, pl.input_count * bytes);
        REQUIRE_CUDA(cudaSetDevice(current));
        REQUIRE_CUDA(allocated);
        require_rejected(flashsci_forward(plan, q, foreign, v, o, lse, nullptr, 0, nullptr),
                         "is memory of device " + std::to_string(other));
        cudaFree(foreign);
    } else {
        WARN("one CUDA device: the other-device check is not exercised");
    }

    // Managed memory is reachable from the device: accepted, and it computes the same result.
    const gpu::Outputs eager = [&] {
        REQUIRE_FLASHSCI(problem.forward(out, nullptr));
        return problem.fetch(out);
    }();
    void* managed = nullptr;
    REQUIRE_CUDA(cudaMallocManaged(&managed, in.size_bytes()));
    const auto free_managed = std::unique_ptr<void, decltype(&cudaFree)>(managed, &cudaFree);
    std::memcpy(managed, in.data(), in.size_bytes());
    const auto* m = static_cast<const unsigned char*>(managed);
    problem.poison(out, nullptr);
    REQUIRE_FLASHSCI(flashsci_forward(plan, m + pl.q_offset * bytes, m + pl.k_offset * bytes, m + pl.v_offset * bytes, o,
                                      lse, nullptr, 0, nullptr));
    CHECK(identical(problem.fetch(out), eager));

    // During a global-mode capture: the rejection is a plain status and the capture stays valid.
    const Stream stream;
    problem.poison(out, stream.get());
    REQUIRE_CUDA(cudaStreamSynchronize(stream.get()));
    REQUIRE_CUDA(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal));
    const flashsci_status_t rejected = flashsci_forward(plan, host.data(), k, v, o, lse, nullptr, 0, stream.get());
    const std::string message = flashsci_last_error();
    const flashsci_status_t captured = problem.forward(out, stream.get());
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream.get(), &graph);
    INFO("rejected: " << message);
    CHECK(rejected == FLASHSCI_STATUS_INVALID_VALUE);
    REQUIRE_FLASHSCI(captured);
    REQUIRE_CUDA(ended);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    REQUIRE_CUDA(instantiated);
    const cudaError_t launched = cudaGraphLaunch(exec, stream.get());
    cudaGraphExecDestroy(exec);
    REQUIRE_CUDA(launched);
    CHECK(identical(problem.fetch(out), eager));
}

TEST_CASE("reliability: the sm90 workspace must be device memory too", "[gpu][quick][sm90]") {
    if (!fast_path_available()) return;
    const Case c{FLASHSCI_DTYPE_BFLOAT16, {1, 300, 300, 2, 2, 128}, FLASHSCI_MASK_CAUSAL};
    std::mt19937_64 rng(fresh_seed());
    const DeviceProblem problem(kSm90, c, random_input(c, place(c), rng));
    if (problem.workspace_bytes() == 0) return;
    const auto out = problem.make_outputs();
    const Placement& pl = problem.placement();
    unsigned char* d = problem.input();
    std::vector<unsigned char> host(problem.workspace_bytes());
    require_rejected(flashsci_forward(problem.plan(), d + pl.q_offset * 2, d + pl.k_offset * 2, d + pl.v_offset * 2,
                                      out.o->get(), nullptr, host.data(), host.size(), nullptr),
                     "workspace (");
}

TEST_CASE("reliability: one plan on 8 threads and 8 streams matches sequential runs bit for bit",
          "[gpu][racecheck-sm90-only]") {
    std::mt19937_64 rng(fresh_seed());
    for (const Path& path : paths())
        for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL}) {
            const Case c{FLASHSCI_DTYPE_BFLOAT16, {2, 1000, 1000, 4, 2, 128}, mask};
            INFO(path.force << ": " << describe(c));
            const HostTensor in = random_input(c, place(c), rng);
            const DeviceProblem problem(path, c, in);
            const auto baseline_buffers = problem.make_outputs();
            REQUIRE_FLASHSCI(problem.forward(baseline_buffers, nullptr));
            const gpu::Outputs baseline = problem.fetch(baseline_buffers);

            constexpr int kRepeats = 5;
            std::vector<DeviceProblem::Outputs> outs;
            std::vector<std::unique_ptr<Stream>> streams;
            for (int t = 0; t < kThreads; ++t) outs.push_back(problem.make_outputs()), streams.push_back(std::make_unique<Stream>());
            std::atomic<int> failures{0}, ready{0};
            std::vector<std::thread> threads;
            for (int t = 0; t < kThreads; ++t)
                threads.emplace_back([&, t] {
                    ++ready;
                    while (ready.load() < kThreads) std::this_thread::yield();
                    for (int r = 0; r < kRepeats; ++r)
                        if (problem.forward(outs[size_t(t)], streams[size_t(t)]->get()) != FLASHSCI_STATUS_SUCCESS)
                            ++failures;
                    if (cudaStreamSynchronize(streams[size_t(t)]->get()) != cudaSuccess) ++failures;
                });
            for (std::thread& t : threads) t.join();
            CHECK(failures == 0);
            for (int t = 0; t < kThreads; ++t) {
                INFO("thread " << t);
                CHECK(identical(problem.fetch(outs[size_t(t)]), baseline));
            }
        }
}

TEST_CASE("reliability: CUDA plans created, used and destroyed on 8 threads at once", "[gpu]") {
    const Case c{FLASHSCI_DTYPE_FLOAT16, {1, 257, 257, 4, 1, 64}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
    std::mt19937_64 rng(fresh_seed());
    const Placement pl = place(c);
    const HostTensor in = random_input(c, pl, rng);
    const DeviceProblem reference(kAuto, c, in);
    const auto reference_buffers = reference.make_outputs();
    REQUIRE_FLASHSCI(reference.forward(reference_buffers, nullptr));
    const gpu::Outputs want = reference.fetch(reference_buffers);

    constexpr int kCycles = 20;
    std::vector<DeviceProblem::Outputs> outs;
    std::vector<std::unique_ptr<Stream>> streams;
    for (int t = 0; t < kThreads; ++t) outs.push_back(reference.make_outputs()), streams.push_back(std::make_unique<Stream>());
    int device = 0;
    REQUIRE_CUDA(cudaGetDevice(&device));
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    const size_t bytes = dtype_bytes(c.dtype);
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            if (cudaSetDevice(device) != cudaSuccess) ++failures;
            const auto& out = outs[size_t(t)];
            for (int i = 0; i < kCycles; ++i) {
                flashsci_plan_t plan = nullptr;
                if (flashsci_plan_create(&plan, FLASHSCI_BACKEND_CUDA) != FLASHSCI_STATUS_SUCCESS) {
                    ++failures;
                    continue;
                }
                const Shape& s = c.shape;
                const unsigned char* d = reference.input();
                if (flashsci_plan_set_shape(plan, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim) ||
                    flashsci_plan_set_dtype(plan, c.dtype) || flashsci_plan_set_mask(plan, c.mask) ||
                    flashsci_forward(plan, d + pl.q_offset * bytes, d + pl.k_offset * bytes, d + pl.v_offset * bytes,
                                     out.o->get(), reinterpret_cast<float*>(out.lse->get()), out.workspace->get(),
                                     reference.workspace_bytes(), streams[size_t(t)]->get()) ||
                    cudaStreamSynchronize(streams[size_t(t)]->get()) != cudaSuccess)
                    ++failures;
                flashsci_plan_destroy(plan);
            }
        });
    for (std::thread& t : threads) t.join();
    CHECK(failures == 0);
    for (int t = 0; t < kThreads; ++t) {
        INFO("thread " << t);
        CHECK(identical(reference.fetch(outs[size_t(t)]), want));
    }
}

TEST_CASE("reliability: a captured forward replayed 100 times equals the eager one bit for bit",
          "[gpu][racecheck-sm90-only]") {
    std::mt19937_64 rng(fresh_seed());
    for (const Path& path : paths())
        for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL}) {
            const Case c{FLASHSCI_DTYPE_BFLOAT16, {2, 300, 300, 4, 2, 128}, mask};
            INFO(path.force << ": " << describe(c));
            const DeviceProblem problem(path, c, random_input(c, place(c), rng));
            const auto out = problem.make_outputs();
            REQUIRE_FLASHSCI(problem.forward(out, nullptr));
            const gpu::Outputs eager = problem.fetch(out);

            const Stream stream;
            const GraphExec exec = capture_graph(stream.get(), [&] { return problem.forward(out, stream.get()); });
            constexpr int kReplays = 100;
            int differing = 0;
            for (int r = 0; r < kReplays; ++r) {
                problem.poison(out, stream.get());
                REQUIRE_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
                REQUIRE_CUDA(cudaStreamSynchronize(stream.get()));
                if (!identical(problem.fetch(out), eager)) ++differing;
            }
            CHECK(differing == 0);
        }
}

TEST_CASE("reliability: the same inputs on one plan, or a fresh one, give bit-identical outputs", "[gpu][quick]") {
    std::mt19937_64 rng(fresh_seed());
    for (const Path& path : paths())
        for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16}) {
            const Case c{dtype, {2, 517, 700, 4, 1, 64}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
            INFO(path.force << ": " << describe(c));
            const HostTensor in = random_input(c, place(c), rng);
            const DeviceProblem problem(path, c, in);
            const auto out = problem.make_outputs();
            REQUIRE_FLASHSCI(problem.forward(out, nullptr));
            const gpu::Outputs first = problem.fetch(out);
            problem.poison(out, nullptr);
            REQUIRE_FLASHSCI(problem.forward(out, nullptr));
            CHECK(identical(problem.fetch(out), first));
            const DeviceProblem fresh(path, c, in);
            const auto fresh_out = fresh.make_outputs();
            REQUIRE_FLASHSCI(fresh.forward(fresh_out, nullptr));
            CHECK(identical(fresh.fetch(fresh_out), first));
        }
}

namespace {

// q and k aligned with one random sign pattern, each key row flipped as a whole: scale·q·k = ±(0.3…1)·1.7e4.
constexpr double kScoreScale = 1.7e4;

HostTensor large_score_input(const Case& c, const Placement& pl, std::mt19937_64& rng) {
    const Shape& s = c.shape;
    REQUIRE(c.storage == Storage::bshd);
    const float r = float(std::sqrt(kScoreScale / double(s.head_dim)));
    std::uniform_real_distribution<float> magnitude(0.55f * r, r), uniform(-1.0f, 1.0f);
    std::bernoulli_distribution coin;
    std::vector<float> sign(size_t(s.head_dim));
    for (float& x : sign) x = coin(rng) ? 1.0f : -1.0f;
    HostTensor in(c.dtype, pl.input_count);
    const size_t d = size_t(s.head_dim);
    for (size_t e = pl.q_offset; e < pl.k_offset; ++e) in.set(e, sign[(e - pl.q_offset) % d] * magnitude(rng));
    for (size_t row = 0; row < (pl.v_offset - pl.k_offset) / d; ++row) {
        const float flip = coin(rng) ? 1.0f : -1.0f;
        for (size_t x = 0; x < d; ++x) {
            in.set(pl.k_offset + row * d + x, flip * sign[x] * magnitude(rng));
            in.set(pl.v_offset + row * d + x, uniform(rng));
        }
    }
    return in;
}

// Like compare(), but fp32 scores of 1e4 carry an absolute error of ~1e-2 (head_dim fp32 roundings of terms
// of ~1e4·2⁻²⁴ each, summed in another order than the fp64 reference), which moves softmax weights by ~1%
// where a row's top scores nearly tie: outputs get kLargeScoreTolerance·max|ref| (fp32: 3.3e-3 seen at
// head_dim 256 on an H100), not kFp32Tolerance, and fp16/bf16 get it in place of kHalfFloor, since their
// scores are the same fp32 sums (fp16 hd256 causal: 5.8e-3 seen on an H200 against a 5e-3 floor).
constexpr double kLargeScoreTolerance = 1e-2;

void compare_large_scores(const Case& c, const Placement& pl, const gpu::Outputs& gpu, const gpu::Outputs& cpu) {
    const Shape& s = c.shape;
    double max_want = 0, max_lse = 0;
    for (size_t i = 0; i < pl.output_count; ++i) max_want = std::max(max_want, std::fabs(cpu.o.get(i)));
    Mismatches bad;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t i = 0; i < s.seqlen_q; ++i)
            for (int64_t h = 0; h < s.heads_q; ++h) {
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t idx = pl.o.offset(b, i, h) + size_t(d);
                    const double got = gpu.o.get(idx), want = cpu.o.get(idx);
                    const double tolerance = kLargeScoreTolerance * max_want +
                                             (c.dtype == FLASHSCI_DTYPE_FLOAT32 ? 0.0 : kHalfRelative * std::fabs(want));
                    const bool ok = std::isfinite(got) && std::fabs(got - want) <= tolerance;
                    bad.add(ok, [&] { return where("O", b, i, h, got, want) + " at column " + std::to_string(d); });
                }
                const size_t l = size_t((b * s.heads_q + h) * s.seqlen_q + i);
                max_lse = std::max(max_lse, std::fabs(double(cpu.lse[l])));
                bad.add(lse_close(row_is_blind(c, i), gpu.lse[l], cpu.lse[l]),
                        [&] { return where("LSE", b, i, h, gpu.lse[l], cpu.lse[l]); });
            }
    INFO("max |LSE| " << max_lse << "; " << bad.count() << " mismatches; first: " << bad.first());
    CHECK(max_lse > 0.3 * kScoreScale);
    CHECK(bad.count() == 0);
}

// Where a non-finite value goes in (an element of the input buffer), and which rows it reaches.
struct Injection {
    enum Tensor { q, k, v } tensor;
    float value;
    int64_t batch, row, head, column;  // head: a query head for q, a key/value head for k and v
};

size_t input_index(const Case& c, const Placement& pl, const Injection& x) {
    const Layout& layout = x.tensor == Injection::q ? pl.q : x.tensor == Injection::k ? pl.k : pl.v;
    const size_t base = x.tensor == Injection::q ? pl.q_offset : x.tensor == Injection::k ? pl.k_offset : pl.v_offset;
    (void)c;
    return base + layout.offset(x.batch, x.row, x.head) + size_t(x.column);
}

bool reached(const Case& c, const Injection& x, int64_t b, int64_t i, int64_t h) {
    if (b != x.batch) return false;
    if (x.tensor == Injection::q) return i == x.row && h == x.head;
    return h / (c.shape.heads_q / c.shape.heads_kv) == x.head && x.row < c.shape.seqlen_k &&
           x.row <= i + mask_diagonal(c.mask, c.shape);
}

// On the sm90 and sm80 paths a NaN or infinity of v in O (a row that sees it, or a masked key's that the tensor cores
// multiply by 0 into rows that never see it) sends O of that batch and kv head's query heads to the general
// kernel: the rows there that do not see it stay finite and equal to the clean run up to rounding (flashsci.h,
// "NaN and infinity"), not bit for bit; LSE stays bit for bit. A non-finite q or k leaves every other row bit
// for bit.
constexpr double kRoundingTolerance = 1e-2;  // of an element of O, relative, plus as much absolute

// Whether query head h of batch b reads the kv head that a v injection x is in.
bool shares_kv_head(const Case& c, const Injection& x, int64_t b, int64_t h) {
    return b == x.batch && h / (c.shape.heads_q / c.shape.heads_kv) == x.head;
}

bool same_element(const HostTensor& a, const HostTensor& b, size_t index) {
    const size_t bytes = dtype_bytes(a.dtype());
    return std::memcmp(static_cast<const char*>(a.data()) + index * bytes,
                       static_cast<const char*>(b.data()) + index * bytes, bytes) == 0;
}

// flashsci.h's policy against a clean run on the same plan: NaN in q or k → the rows that see it are NaN
// (O and LSE); NaN in v[.., d] → column d of those rows is NaN, the rest unchanged; ±Inf → those rows are
// unspecified; every other row is bit-identical to the clean run.
void check_policy(const Path& path, const Case& c, const Placement& pl, const Injection& x,
                  const gpu::Outputs& clean, const gpu::Outputs& dirty) {
    const Shape& s = c.shape;
    const bool nan = std::isnan(x.value);
    const bool tile_rounding_allowed = tensor_cores(path) && x.tensor == Injection::v;
    Mismatches spilled, off_policy;
    int64_t reached_rows = 0;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                const size_t l = size_t((b * s.heads_q + h) * s.seqlen_q + i);
                const auto row = [&] {
                    return "row [" + std::to_string(b) + ", " + std::to_string(i) + ", " + std::to_string(h) + "]";
                };
                const bool lse_same = std::memcmp(&clean.lse[l], &dirty.lse[l], sizeof(float)) == 0;
                const bool rounding = tile_rounding_allowed && shares_kv_head(c, x, b, h);
                const auto unchanged = [&](size_t o) {
                    const double want = clean.o.get(o), got = dirty.o.get(o);
                    return rounding ? std::isfinite(got) && std::abs(got - want) <= kRoundingTolerance * (1 + std::abs(want))
                                    : same_element(clean.o, dirty.o, o);
                };
                if (!reached(c, x, b, i, h)) {
                    bool same = lse_same;
                    for (int64_t d = 0; d < s.head_dim; ++d) same = same && unchanged(pl.o.offset(b, i, h) + size_t(d));
                    spilled.add(same, [&] { return "spilled into " + row(); });
                    continue;
                }
                ++reached_rows;
                if (!nan) continue;
                bool ok = x.tensor == Injection::v ? lse_same : std::isnan(dirty.lse[l]);
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t o = pl.o.offset(b, i, h) + size_t(d);
                    const bool nan_here = x.tensor != Injection::v || d == x.column;
                    ok = ok && (nan_here ? std::isnan(dirty.o.get(o)) : unchanged(o));
                }
                off_policy.add(ok, [&] {
                    return row() + " sees the NaN: O[0] " + std::to_string(dirty.o.get(pl.o.offset(b, i, h))) +
                           ", LSE " + std::to_string(dirty.lse[l]);
                });
            }
    static const char* names[] = {"q", "k", "v"};
    INFO(describe(c) << ": " << x.value << " in " << names[x.tensor] << "[" << x.batch << ", " << x.row << ", "
                     << x.head << ", " << x.column << "], seen by " << reached_rows << " rows; " << spilled.count()
                     << " rows spilled (first: " << spilled.first() << "), " << off_policy.count()
                     << " rows off policy (first: " << off_policy.first() << ")");
    CHECK(reached_rows > 0);
    CHECK(spilled.count() == 0);
    CHECK(off_policy.count() == 0);
}

// Sampled rows of a long single-head problem against the fp64 reference; O(seqlen) memory: no workspace
// beyond a few bytes, and nothing allocated by forward (it runs inside the caller's stream as usual).
void check_long(const Path& path, int64_t seqlen, flashsci_mask_t mask) {
    constexpr int64_t kHeadDim = 64;
    constexpr int kSampledRows = 48;
    const Case c{FLASHSCI_DTYPE_BFLOAT16, {1, seqlen, seqlen, 1, 1, kHeadDim}, mask};
    const uint64_t seed = fresh_seed();
    INFO(path.force << ": " << describe(c) << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const Placement pl = place(c);
    const HostTensor in = random_input(c, pl, rng);
    const DeviceProblem problem(path, c, in);
    CHECK(problem.workspace_bytes() <= 64);
    const auto out = problem.make_outputs();
    REQUIRE_FLASHSCI(problem.forward(out, nullptr));
    const gpu::Outputs gpu = problem.fetch(out);

    check_sampled_rows(c, pl, in, gpu, {0, 1, seqlen / 2, seqlen - 1}, kSampledRows, rng);
}

}  // namespace

TEST_CASE("reliability: scores of magnitude 1e4 match the CPU backend, head_dim 8 to 256", "[gpu]") {
    std::mt19937_64 rng(fresh_seed());
    for (const Path& path : paths())
        for (const flashsci_dtype_t dtype : kDtypes)
            for (const int64_t head_dim : {8, 64, 128, 256}) {
                const bool sm90 = std::string(path.force) == "sm90";
                if (half_only(path) && dtype == FLASHSCI_DTYPE_FLOAT32) continue;  // not on the fast path
                if (sm90 && head_dim == 8) continue;                                 // not on the fast path
                for (const flashsci_mask_t mask : kMasks) {
                    const Case c{dtype, {2, 150, 333, 2, 1, head_dim}, mask, Storage::bshd, 1.0f};
                    INFO(path.force << ": " << describe(c));
                    const Placement pl = place(c);
                    const HostTensor in = large_score_input(c, pl, rng);
                    const gpu::Outputs cpu = run_cpu(c, pl, in);
                    const gpu::Outputs gpu = run_cuda(path, c, pl, in);
                    compare_large_scores(c, pl, gpu, cpu);
                }
            }
}

TEST_CASE("reliability: a NaN reaches only the rows that see it, Inf never spills",
          "[gpu][racecheck-sm90-only]") {
    std::mt19937_64 rng(fresh_seed());
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    for (const Path& path : paths())
        for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_FLOAT32}) {
            if (half_only(path) && dtype == FLASHSCI_DTYPE_FLOAT32) continue;
            // Every tile width of the sm90 path and every bucket of the sm80 path (a masked block's non-finite v
            // sends its sequence and kv head to the general kernel's redo).
            const std::vector<int64_t> head_dims =
                std::string(path.force) == "sm90"   ? std::vector<int64_t>(std::begin(kFastHeadDims), std::end(kFastHeadDims))
                : std::string(path.force) == "sm80" ? std::vector<int64_t>{64, 72, 128, 256}
                                                    : std::vector<int64_t>{128};
            for (const int64_t head_dim : head_dims)
                for (const auto& [seqlen_q, seqlen_k] : {std::pair<int64_t, int64_t>{200, 300}, {300, 200}})
                    for (const flashsci_mask_t mask : kMasks) {
                        const Case c{dtype, {2, seqlen_q, seqlen_k, 4, 2, head_dim}, mask};
                        const Placement pl = place(c);
                        const HostTensor in = random_input(c, pl, rng);
                        const DeviceProblem problem(path, c, in);
                        const auto out = problem.make_outputs();
                        REQUIRE_FLASHSCI(problem.forward(out, nullptr));
                        const gpu::Outputs clean = problem.fetch(out);
                        // Key 150 sits inside a tile of every path, past the diagonal of many rows of its tile.
                        for (const float value : {nan, inf, -inf})
                            for (const Injection& x : {Injection{Injection::q, value, 1, 170, 3, 5},
                                                       Injection{Injection::k, value, 1, 150, 1, 5},
                                                       Injection{Injection::v, value, 0, 150, 0, head_dim - 51}}) {
                                HostTensor dirty_input = in;
                                dirty_input.set(input_index(c, pl, x), value);
                                REQUIRE_CUDA(cudaMemcpy(problem.input(), dirty_input.data(), dirty_input.size_bytes(),
                                                        cudaMemcpyHostToDevice));
                                problem.poison(out, nullptr);
                                REQUIRE_FLASHSCI(problem.forward(out, nullptr));
                                INFO(path.force);
                                check_policy(path, c, pl, x, clean, problem.fetch(out));
                            }
                    }
        }
}

TEST_CASE("reliability: seqlen 128k on the default path, sampled rows against fp64", "[gpu][long]") {
    check_long(kAuto, int64_t{1} << 17, FLASHSCI_MASK_NONE);
}

TEST_CASE("reliability: seqlen 1M on the default and general paths, sampled rows against fp64", "[gpu][long]") {
    check_long(kAuto, int64_t{1} << 20, FLASHSCI_MASK_CAUSAL);
    check_long(kGeneral, int64_t{1} << 20, FLASHSCI_MASK_CAUSAL);
}
