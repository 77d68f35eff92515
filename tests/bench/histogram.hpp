// A log-linear latency histogram in the manner of HdrHistogram: constant relative precision over
// a wide range in a fixed, small array, so recording is O(1) and never allocates.
//
// Values are non-negative integers (the bench tools record nanoseconds). Values below 256 have
// their own bucket; above that each power of two is split into 128 equal buckets, so a bucket's
// width is at most 1/128 (0.8 %) of its lower bound. Values at or above 2^42 (about 73 minutes in
// nanoseconds) are clamped into the last bucket; max() still reports the exact largest value.
//
// Not thread-safe: give each thread its own and merge() them when the run is over.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace handoff::bench {

class histogram {
public:
    static constexpr int sub_bits = 7;                             // 128 buckets per power of two
    static constexpr std::uint64_t linear_limit = 2u << sub_bits;  // 256: one bucket per value below
    static constexpr int max_shift = 42 - sub_bits - 1;            // highest power of two covered: 2^42
    static constexpr std::size_t bucket_count = linear_limit + static_cast<std::size_t>(max_shift) * (1u << sub_bits);

    // The bucket holding v. Pure; exposed for the unit test.
    static constexpr std::size_t index_of(std::uint64_t v) {
        if (v < linear_limit) return static_cast<std::size_t>(v);
        int shift = std::bit_width(v) - 1 - sub_bits;  // >= 1 here
        if (shift > max_shift) return bucket_count - 1;
        std::uint64_t top = v >> shift;  // in [128, 255]
        return linear_limit + static_cast<std::size_t>(shift - 1) * (1u << sub_bits) +
               static_cast<std::size_t>(top - (1u << sub_bits));
    }

    // The largest value that lands in bucket i (what a percentile reports: never optimistic).
    static constexpr std::uint64_t upper_bound_of(std::size_t i) {
        if (i < linear_limit) return i;
        std::size_t rel = i - linear_limit;
        int shift = static_cast<int>(rel >> sub_bits) + 1;
        std::uint64_t top = (rel & ((1u << sub_bits) - 1)) + (1u << sub_bits);
        return ((top + 1) << shift) - 1;
    }

    void record(std::uint64_t v) {
        ++counts_[index_of(v)];
        ++total_;
        max_ = std::max(max_, v);
        min_ = std::min(min_, v);
        sum_ += v;
    }

    void merge(const histogram& o) {
        for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += o.counts_[i];
        total_ += o.total_;
        max_ = std::max(max_, o.max_);
        min_ = std::min(min_, o.min_);
        sum_ += o.sum_;
    }

    // The value at quantile q in [0, 1]: the upper bound of the bucket holding the
    // ceil(q * count)-th smallest value, capped at the exact maximum (and the exact maximum for the
    // clamped last bucket). 0 when empty.
    std::uint64_t quantile(double q) const {
        if (total_ == 0) return 0;
        auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_) + 0.999999);
        rank = std::clamp<std::uint64_t>(rank, 1, total_);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += counts_[i];
            if (seen >= rank) return i == bucket_count - 1 ? max_ : std::min(upper_bound_of(i), max_);
        }
        return max_;
    }

    std::uint64_t count() const { return total_; }
    std::uint64_t max() const { return max_; }
    std::uint64_t min() const { return total_ ? min_ : 0; }
    double mean() const { return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0.0; }

private:
    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t total_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    std::uint64_t sum_ = 0;
};

}  // namespace handoff::bench
