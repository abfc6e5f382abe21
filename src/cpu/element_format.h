// How the CPU backend stores each element type and in which type it accumulates.
#pragma once

#include <cstdint>

#include "cpu/half.h"
#include "problem.h"

namespace flashsci::cpu {

template <kernels::Element E>
struct Format;

template <>
struct Format<kernels::Element::f16> {
    using Stored = uint16_t;
    using Acc = float;
    static Acc load(Stored x) { return fp16_to_float(x); }
    static Stored store(Acc x) { return float_to_fp16(x); }
};

template <>
struct Format<kernels::Element::bf16> {
    using Stored = uint16_t;
    using Acc = float;
    static Acc load(Stored x) { return bf16_to_float(x); }
    static Stored store(Acc x) { return float_to_bf16(x); }
};

template <>
struct Format<kernels::Element::f32> {
    using Stored = float;
    using Acc = double;
    static Acc load(Stored x) { return x; }
    static Stored store(Acc x) { return static_cast<float>(x); }  // rounds to nearest even
};

}  // namespace flashsci::cpu
