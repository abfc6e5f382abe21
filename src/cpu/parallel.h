// Work spread over every core of the host, for the CPU backend's passes.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace flashsci::cpu {

// Runs drain(next) on every core, the calling thread included; drain takes item numbers from
// next(item) until it returns false. The first exception stops the handing out of items and is
// rethrown once every thread is joined, so no thread outlives the call.
template <class Drain>
void run_on_all_cores(int64_t item_count, const Drain& drain) {
    std::atomic<int64_t> next_item{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    auto next = [&](int64_t& item) {
        item = next_item.fetch_add(1);
        return item < item_count;
    };
    auto drain_guarded = [&]() noexcept {
        try {
            drain(next);
        } catch (...) {
            next_item.store(item_count);
            if (!failed.exchange(true)) first_error = std::current_exception();
        }
    };
    const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
    const int64_t helper_count = std::min(cores, item_count) - 1;
    std::vector<std::thread> helpers;
    helpers.reserve(size_t(std::max<int64_t>(helper_count, 0)));
    for (int64_t t = 0; t < helper_count; ++t) {
        try {
            helpers.emplace_back(drain_guarded);
        } catch (...) {
            break;  // fewer threads still finish every item
        }
    }
    drain_guarded();
    for (std::thread& helper : helpers) helper.join();
    if (failed) std::rethrow_exception(first_error);
}

}  // namespace flashsci::cpu
