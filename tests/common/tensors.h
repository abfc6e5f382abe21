// Host tensors for tests: typed storage, fresh random fills, poison, and fp64 views.
#pragma once

#include <flashsci.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/half.h"

namespace flashsci::test {

inline size_t dtype_bytes(flashsci_dtype_t dtype) { return dtype == FLASHSCI_DTYPE_FLOAT32 ? 4 : 2; }

inline const char* dtype_name(flashsci_dtype_t dtype) {
    switch (dtype) {
        case FLASHSCI_DTYPE_FLOAT16: return "fp16";
        case FLASHSCI_DTYPE_BFLOAT16: return "bf16";
        case FLASHSCI_DTYPE_FLOAT32: return "fp32";
    }
    return "?";
}

// A flat buffer of `count` elements of one flashsci dtype, stored as raw bytes.
class HostTensor {
public:
    HostTensor(flashsci_dtype_t dtype, size_t count) : dtype_(dtype), count_(count), bytes_(count * dtype_bytes(dtype)) {}

    void* data() { return bytes_.data(); }
    const void* data() const { return bytes_.data(); }
    size_t count() const { return count_; }
    size_t size_bytes() const { return bytes_.size(); }
    flashsci_dtype_t dtype() const { return dtype_; }

    double get(size_t i) const {
        switch (dtype_) {
            case FLASHSCI_DTYPE_FLOAT16: return cpu::fp16_to_float(half_at(i));
            case FLASHSCI_DTYPE_BFLOAT16: return cpu::bf16_to_float(half_at(i));
            case FLASHSCI_DTYPE_FLOAT32: {
                float f;
                std::memcpy(&f, bytes_.data() + 4 * i, 4);
                return f;
            }
        }
        return NAN;
    }

    void set(size_t i, float value) {
        switch (dtype_) {
            case FLASHSCI_DTYPE_FLOAT16: set_half(i, cpu::float_to_fp16(value)); return;
            case FLASHSCI_DTYPE_BFLOAT16: set_half(i, cpu::float_to_bf16(value)); return;
            case FLASHSCI_DTYPE_FLOAT32: std::memcpy(bytes_.data() + 4 * i, &value, 4); return;
        }
    }

    // Uniform in [-range, range), rounded to the dtype.
    void fill_random(std::mt19937_64& rng, float range = 1.0f) {
        std::uniform_real_distribution<float> uniform(-range, range);
        for (size_t i = 0; i < count_; ++i) set(i, uniform(rng));
    }

    // Every byte 0xFF: NaN in all three dtypes, so an unwritten element cannot pass a comparison.
    void poison() { std::memset(bytes_.data(), 0xff, bytes_.size()); }

    bool is_poisoned() const {
        for (unsigned char b : bytes_)
            if (b != 0xff) return false;
        return true;
    }

private:
    uint16_t half_at(size_t i) const {
        uint16_t h;
        std::memcpy(&h, bytes_.data() + 2 * i, 2);
        return h;
    }
    void set_half(size_t i, uint16_t h) { std::memcpy(bytes_.data() + 2 * i, &h, 2); }

    flashsci_dtype_t dtype_;
    size_t count_;
    std::vector<unsigned char> bytes_;
};

// A fresh seed per call, logged by the caller, so every run draws new inputs.
inline uint64_t fresh_seed() { return std::random_device{}() * 0x9E3779B97F4A7C15ull ^ std::random_device{}(); }

}  // namespace flashsci::test
