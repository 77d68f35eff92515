// The reply consumer: manual assignment of every partition of `replies.topic` (no group), kept
// up to date by a control thread that reads the topic's metadata and creates the topic if asked.
#include "handoff/adapters/kafka/consumer.hpp"

#include "conf.hpp"
#include "consumer_internal.hpp"

#include <handoff/common/ids.hpp>

namespace handoff::adapters::kafka {

namespace consumer_detail {

void consumer_impl::control() {
    const auto& topic = replies_->topic;
    const auto refresh = std::chrono::milliseconds(replies_->refresh_interval.count());
    bool started = false;  // the first assignment (at the end offsets) is done
    bool lost = false;     // the topic vanished after start
    bool created = false;  // this process created the topic
    topic_identity known;  // of the topic whose partitions are assigned
    auto backoff = std::chrono::milliseconds(500);
    std::string last_problem;  // log each distinct problem once, not at every retry
    const auto problem = [&](log::level lvl, const std::string& msg, const std::string& reason,
                             std::vector<std::pair<std::string, std::string>> extra = {}) {
        if (!started) set_not_ready(reason);
        if (reason == last_problem) return;
        last_problem = reason;
        nlohmann::json f{{"topic", topic}, {"reason", reason}};
        for (auto& [k, v] : extra) f[k] = v;
        log::write(lvl, msg, std::move(f));
    };
    const auto retry = [&] {
        wait(backoff);
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::max(refresh, std::chrono::milliseconds(500)));
    };
    while (!stopping()) {
        std::int32_t count = 0;
        std::string error_name, error_text;
        const auto state = read_partition_count(count, error_name, error_text);
        if (state == topic_state::error) {
            const auto needs = proxy::metadata_failure_needs(topic, error_name);
            std::vector<std::pair<std::string, std::string>> extra;
            if (!needs.empty()) extra.emplace_back("needs", needs);  // a permission, not an outage
            problem(needs.empty() ? log::level::warn : log::level::error, "cannot read the " + what_ + "'s metadata",
                    "cannot read the metadata of the " + what_ + " '" + topic + "': " + error_name +
                        (error_text.empty() ? "" : " (" + error_text + ")"),
                    std::move(extra));
            retry();
            continue;
        }
        if (state == topic_state::missing) {
            if (started && !lost) {
                // Nothing can arrive: traffic should go elsewhere until the topic is back. What was
                // read from it is dropped; the topic that comes back is read from its beginning.
                const std::string reason = "the " + what_ + " '" + topic + "' no longer exists";
                set_not_ready(reason);
                lost = true;
                created = false;
                known = {};
                drop_assignment();
                problem(log::level::error, "the " + what_ + " disappeared", reason);
            }
            if (started && !replies_->create.enabled) {
                retry();
                continue;
            }
            if (!replies_->create.enabled) {
                problem(log::level::error, what_ + " missing and its creation is off; it needs CREATE on the topic",
                        proxy::missing_topic_reason(topic),
                        {{"needs", "CREATE on topic '" + topic + "' (whoever creates it), or replies.create on"}});
                retry();
                continue;
            }
            if (created) {
                // Ours, not yet in the metadata of the broker we asked: wait, do not create again.
                set_not_ready("the " + what_ + " '" + topic + "' was created and is not in the metadata yet");
                wait(std::chrono::milliseconds(200));
                continue;
            }
            if (!create_topic(error_name, error_text)) {
                const auto f = proxy::describe_creation_failure(topic, error_name, error_text);
                problem(log::level::error, what_ + " cannot be created; it needs CREATE on the topic", f.reason,
                        {{"needs", f.needs}});
                retry();
                continue;
            }
            created = true;
            continue;
        }
        // A topic deleted and created again between two looks, or a new cluster under the same
        // address (with the topic already made there): the same name, another log. Positions in
        // the old one mean nothing in it.
        const auto now_is = check_topic_ ? read_identity() : topic_identity{};
        if (lost) {
            lost = false;
            last_problem.clear();
            log::info("the " + what_ + " exists again; reading it from its beginning", {{"topic", topic}});
        } else if (known.replaced_by(now_is)) {
            log::warn("the " + what_ + " was replaced: same name, another topic; reading it from its beginning",
                      {{"topic", topic},
                       {"cluster_id", now_is.cluster_id},
                       {"was_cluster_id", known.cluster_id},
                       {"topic_id", now_is.topic_id},
                       {"was_topic_id", known.topic_id}});
            set_not_ready("the " + what_ + " '" + topic + "' was replaced; reading it again");
            drop_assignment();
        }
        known.update(now_is);
        if (reply_assigned_.empty() && compaction_lag_.count() > 0 && check_topic_) {
            std::string unsafe;
            if (!check_compaction(unsafe)) {
                set_not_ready(unsafe);  // before the first assignment and after a replacement alike
                problem(log::level::error, "the " + what_ + " is compacted too soon for idempotency.ttl", unsafe,
                        {{"needs", "min.compaction.lag.ms >= " + std::to_string(compaction_lag_.count()) +
                                       " on topic '" + topic + "', or cleanup.policy=delete"}});
                retry();
                continue;
            }
        }
        const auto add = proxy::partitions_to_add(reply_assigned_, count);
        if (!add.empty()) {
            if (assign(add, /*from_end=*/!started && !from_beginning_, error_name)) {
                started = true;
                // The state topic turns ready on its strand, once read up to its end offsets.
                if (!from_beginning_) set_not_ready({});
            } else {
                problem(log::level::warn, "cannot assign the " + what_ + "'s partitions",
                        "cannot start reading the " + what_ + " '" + topic + "': " + error_name);
                retry();
                continue;
            }
        }
        watch_fetch();
        backoff = std::chrono::milliseconds(500);
        last_problem.clear();  // a problem that comes back later is logged again
        wait(refresh);
    }
}

bool consumer_impl::topic_identity::replaced_by(const topic_identity& now) const {
    const auto differs = [](const std::string& a, const std::string& b) {
        return !a.empty() && !b.empty() && a != b;  // unknown on either side: no evidence
    };
    return differs(cluster_id, now.cluster_id) || differs(topic_id, now.topic_id);
}

void consumer_impl::topic_identity::update(const topic_identity& now) {
    if (!now.cluster_id.empty()) cluster_id = now.cluster_id;
    if (!now.topic_id.empty()) topic_id = now.topic_id;
}

consumer_impl::event_ptr consumer_impl::admin_request(
    rd_kafka_admin_op_t op, int request_timeout_ms, int operation_timeout_ms, std::chrono::milliseconds wait,
    const std::function<void(rd_kafka_AdminOptions_t*, rd_kafka_queue_t*)>& issue) {
    char errstr[256] = {};
    rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk_, op);
    rd_kafka_AdminOptions_set_request_timeout(opts, request_timeout_ms, errstr, sizeof errstr);
    if (operation_timeout_ms >= 0)
        rd_kafka_AdminOptions_set_operation_timeout(opts, operation_timeout_ms, errstr, sizeof errstr);
    rd_kafka_queue_t* q = rd_kafka_queue_new(rk_);
    issue(opts, q);
    rd_kafka_event_t* ev = nullptr;
    for (auto left = wait; left.count() > 0 && !ev && !stopping(); left -= std::chrono::milliseconds(250)) {
        ev = rd_kafka_queue_poll(q, 250);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    return event_ptr(ev);
}

// The cluster's ID (librdkafka's, from the last metadata) and the topic's ID (DescribeTopics, which
// brokers since Kafka 2.8 answer); either is empty when it cannot be read now.
consumer_impl::topic_identity consumer_impl::read_identity() {
    topic_identity out;
    if (char* id = rd_kafka_clusterid(rk_, 2000)) {
        out.cluster_id = id;
        rd_kafka_mem_free(rk_, id);
    }
    const char* names[] = {replies_->topic.c_str()};
    rd_kafka_TopicCollection_t* topics = rd_kafka_TopicCollection_of_topic_names(names, 1);
    const auto ev = admin_request(
        RD_KAFKA_ADMIN_OP_DESCRIBETOPICS, 5000, -1, std::chrono::seconds(6),
        [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_DescribeTopics(rk_, topics, opts, q); });
    rd_kafka_TopicCollection_destroy(topics);
    if (ev && !rd_kafka_event_error(ev.get())) {
        size_t n = 0;
        const auto* res = rd_kafka_event_DescribeTopics_result(ev.get());
        const rd_kafka_TopicDescription_t** d = res ? rd_kafka_DescribeTopics_result_topics(res, &n) : nullptr;
        if (n == 1 && !rd_kafka_error_code(rd_kafka_TopicDescription_error(d[0]))) {
            const rd_kafka_Uuid_t* u = rd_kafka_TopicDescription_topic_id(d[0]);
            // The zero ID: a broker that does not know topic IDs.
            if (u && (rd_kafka_Uuid_most_significant_bits(u) || rd_kafka_Uuid_least_significant_bits(u))) {
                out.topic_id = rd_kafka_Uuid_base64str(u);
            }
        }
    }
    return out;
}

// The state topic's configs, read before it is assigned: false (with the reason) when it is
// compacted and a record may be compacted before it is idempotency.ttl old. A topic whose configs
// cannot be read (no DESCRIBE_CONFIGS permission) is read anyway, with a warning.
bool consumer_impl::check_compaction(std::string& unsafe) {
    rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, replies_->topic.c_str());
    const auto ev = admin_request(
        RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, 5000, -1, std::chrono::seconds(6),
        [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_DescribeConfigs(rk_, &res, 1, opts, q); });
    rd_kafka_ConfigResource_destroy(res);
    std::string policy, lag, problem;
    if (!ev) {
        problem = "no answer to DescribeConfigs";
    } else if (const auto err = rd_kafka_event_error(ev.get())) {
        problem = rd_kafka_err2name(err);
    } else {
        size_t n = 0;
        const auto* r = rd_kafka_event_DescribeConfigs_result(ev.get());
        const rd_kafka_ConfigResource_t** rs = r ? rd_kafka_DescribeConfigs_result_resources(r, &n) : nullptr;
        if (n != 1 || rd_kafka_ConfigResource_error(rs[0])) {
            problem = n == 1 ? rd_kafka_err2name(rd_kafka_ConfigResource_error(rs[0])) : "no result";
        } else {
            size_t cnt = 0;
            const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(rs[0], &cnt);
            for (size_t i = 0; i < cnt; ++i) {
                const std::string name = rd_kafka_ConfigEntry_name(entries[i]);
                const char* value = rd_kafka_ConfigEntry_value(entries[i]);
                if (name == "cleanup.policy") policy = value ? value : "";
                if (name == "min.compaction.lag.ms") lag = value ? value : "";
            }
        }
    }
    if (!problem.empty()) {
        log::warn("cannot read the " + what_ + "'s configs; its compaction is not checked",
                  {{"topic", replies_->topic}, {"error", problem}, {"needs", "DESCRIBE_CONFIGS on the topic"}});
        return true;
    }
    if (policy.find("compact") == std::string::npos) return true;
    long long lag_ms = 0;
    try {
        lag_ms = std::stoll(lag);
    } catch (const std::exception&) {
        lag_ms = 0;
    }
    if (lag_ms >= compaction_lag_.count()) return true;
    unsafe = "the " + what_ + " '" + replies_->topic + "' is compacted (cleanup.policy=" + policy +
             ") with min.compaction.lag.ms=" + (lag.empty() ? "0" : lag) + ", below idempotency.ttl (" +
             std::to_string(compaction_lag_.count()) +
             " ms): compaction could drop a live key's claim, and a replica started after that would run a retry again";
    return false;
}

// librdkafka's consumer can stay stuck on a partition after a broker restart (its fetch never
// resumes; a new consumer reads on). Every round, each assigned partition that read nothing for
// fetch_stall_after is looked at: when its leader has records past the point read, its fetch is
// restarted there. An idle partition costs one ListOffsets request per fetch_stall_after.
void consumer_impl::watch_fetch() {
    std::map<std::int32_t, std::int64_t> reached;
    {
        std::lock_guard lock(progress_mutex_);
        reached = progress_;
    }
    const auto now = std::chrono::steady_clock::now();
    for (const auto p : reply_assigned_) {
        const auto it = reached.find(p);
        if (it == reached.end() || stopping()) continue;
        const auto at = fetch_watch_.observe(p, it->second, now, [&]() -> std::optional<fetch_watch::offsets> {
            std::int64_t low = 0, high = 0;
            if (rd_kafka_query_watermark_offsets(rk_, replies_->topic.c_str(), p, &low, &high, 2000)) {
                return std::nullopt;
            }
            return fetch_watch::offsets{low, high};
        });
        if (at) restart_fetch(p, *at);
    }
}

// Unassigns the partition and assigns it again at `at`: a new fetch, without its listener being told
// (nothing read is lost or read twice: `at` is the next offset it has not seen).
void consumer_impl::restart_fetch(std::int32_t partition, std::int64_t at) {
    const auto& topic = replies_->topic;
    log::warn("a partition of the " + what_ + " read nothing while records wait; restarting its fetch",
              {{"topic", topic},
               {"partition", partition},
               {"offset", at},
               {"restarts", fetch_watch_.restarts(partition)},
               {"after_ms", fetch_stall_after.count()}});
    tpl_ptr l(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), partition);
    // Assigned again even when the unassign is refused (a partition an earlier round failed to assign
    // again is not assigned): a refused assign is retried at the next look, its offset kept.
    if (auto* e = rd_kafka_incremental_unassign(rk_, l.get())) {
        log::warn("cannot unassign a stalled partition", {{"topic", topic}, {"error", rd_kafka_error_string(e)}});
        rd_kafka_error_destroy(e);
    }
    l->elems[0].offset = at;
    if (auto* e = rd_kafka_incremental_assign(rk_, l.get())) {
        log::error("cannot assign a stalled partition again", {{"topic", topic}, {"error", rd_kafka_error_string(e)}});
        rd_kafka_error_destroy(e);
    }
    // Nothing here pauses these partitions: a pause found on one is not ours, and would stall it.
    rd_kafka_resume_partitions(rk_, l.get());
    fetch_stalls_.fetch_add(1, std::memory_order_relaxed);
}

// Gives up every assigned partition of the topic: its listener is told they are lost (on the
// strand, before any record of a later assignment), and the state topic's catch-up starts over.
void consumer_impl::drop_assignment() {
    if (reply_assigned_.empty()) return;
    const auto& topic = replies_->topic;
    tpl_ptr l(rd_kafka_topic_partition_list_new(static_cast<int>(reply_assigned_.size())));
    std::vector<proxy::topic_partition> list;
    for (const auto p : reply_assigned_) {
        rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), p);
        list.push_back({topic, p});
    }
    if (auto* e = rd_kafka_incremental_unassign(rk_, l.get())) {
        log::error("cannot unassign the " + what_ + "'s partitions",
                   {{"topic", topic}, {"error", rd_kafka_error_string(e)}});
        rd_kafka_error_destroy(e);
    }
    reply_assigned_.clear();
    fetch_watch_.clear();
    {
        std::lock_guard lock(progress_mutex_);
        progress_.clear();
    }
    {
        std::lock_guard lock(lag_mutex_);
        for (const auto& tp : list) assigned_.erase(tp);
    }
    {
        std::lock_guard lock(ready_mutex_);
        catch_up_started_ = false;  // until the next assignment reads its own end offsets
        catch_up_.clear();
    }
    asio::post(strand_, [this, alive = std::weak_ptr<int>(alive_), list = std::move(list)] {
        if (!alive.lock() || closing_) return;
        caught_up_ = false;
        at_end_.clear();
        if (!listener_) return;
        try {
            listener_->on_revoked(list, /*lost=*/true);
        } catch (const std::exception& e) {
            log::error("reply listener threw", {{"error", e.what()}});
        }
    });
}

consumer_impl::topic_state consumer_impl::read_partition_count(std::int32_t& count, std::string& error_name,
                                                               std::string& error_text) {
    if (!reply_topic_) reply_topic_ = rd_kafka_topic_new(rk_, replies_->topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const auto err = rd_kafka_metadata(rk_, 0, reply_topic_, &md, 5000);
    if (err) {
        error_name = rd_kafka_err2name(err);
        error_text = rd_kafka_err2str(err);
        return topic_state::error;
    }
    topic_state out = topic_state::error;
    error_name = "no metadata for the topic";
    for (int i = 0; i < md->topic_cnt; ++i) {
        const auto& t = md->topics[i];
        if (replies_->topic != t.topic) continue;
        if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_ID) {
            out = topic_state::missing;
        } else if (t.err && t.partition_cnt == 0) {
            error_name = rd_kafka_err2name(t.err);
            error_text = rd_kafka_err2str(t.err);
        } else {
            count = t.partition_cnt;
            out = t.partition_cnt > 0 ? topic_state::exists : topic_state::missing;
        }
    }
    rd_kafka_metadata_destroy(md);
    return out;
}

// CreateTopics; true when created (or created meanwhile by someone else).
bool consumer_impl::create_topic(std::string& error_name, std::string& error_text) {
    const auto& c = replies_->create;
    char errstr[512] = {};
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(replies_->topic.c_str(), c.partitions, c.replication_factor, errstr, sizeof errstr);
    if (!nt) {
        error_name = "INVALID_REQUEST";
        error_text = errstr;
        return false;
    }
    const auto retention = std::to_string(c.retention.count());
    // segment.ms = retention: retention deletes whole closed segments only; with the default
    // segment.ms (7 days) a quiet topic would keep its data that long.
    rd_kafka_NewTopic_set_config(nt, "retention.ms", retention.c_str());
    rd_kafka_NewTopic_set_config(nt, "segment.ms", retention.c_str());
    for (const auto& [k, v] : create_configs_) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    const auto ev = admin_request(
        RD_KAFKA_ADMIN_OP_CREATETOPICS, 10000, 8000, std::chrono::seconds(15),
        [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_CreateTopics(rk_, &nt, 1, opts, q); });
    bool ok = false;
    if (!ev) {
        error_name = stopping() ? "_DESTROY" : "_TIMED_OUT";
        error_text = "no answer to CreateTopics";
    } else if (const auto eerr = rd_kafka_event_error(ev.get())) {
        error_name = rd_kafka_err2name(eerr);
        error_text = rd_kafka_event_error_string(ev.get());
    } else {
        size_t n = 0;
        const auto* res = rd_kafka_event_CreateTopics_result(ev.get());
        const rd_kafka_topic_result_t** topics = res ? rd_kafka_CreateTopics_result_topics(res, &n) : nullptr;
        const auto terr = n > 0 ? rd_kafka_topic_result_error(topics[0]) : RD_KAFKA_RESP_ERR__FAIL;
        if (terr == RD_KAFKA_RESP_ERR_NO_ERROR || terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            ok = true;
            log::info(what_ + (terr ? " already created by another process" : " created"),
                      {{"topic", replies_->topic},
                       {"partitions", c.partitions},
                       {"replication_factor", c.replication_factor},
                       {"retention_ms", c.retention.count()}});
        } else {
            error_name = rd_kafka_err2name(terr);
            const char* s = n > 0 ? rd_kafka_topic_result_error_string(topics[0]) : nullptr;
            error_text = s ? s : "";
        }
    }
    rd_kafka_NewTopic_destroy(nt);
    return ok;
}

// Adds `parts` to the assignment: from their end offsets, read now (the first assignment, before
// readiness: a reply written after /readyz turned true is after them), or from their beginning
// (partitions created after start hold only replies written since).
bool consumer_impl::assign(const std::vector<std::int32_t>& parts, bool from_end, std::string& error_name) {
    const auto& topic = replies_->topic;
    tpl_ptr l(rd_kafka_topic_partition_list_new(static_cast<int>(parts.size())));
    std::vector<std::pair<std::int32_t, std::int64_t>> starts;
    const bool catch_up = from_beginning_ && reply_assigned_.empty();
    std::map<std::int32_t, std::int64_t> ends;
    for (const auto p : parts) {
        std::int64_t low = 0, high = 0;
        if (from_end || catch_up) {
            if (stopping()) {
                error_name = "_DESTROY";
                return false;
            }
            if (const auto err = rd_kafka_query_watermark_offsets(rk_, topic.c_str(), p, &low, &high, 5000)) {
                error_name =
                    std::string(rd_kafka_err2name(err)) + " reading the end offset of partition " + std::to_string(p);
                return false;
            }
        }
        if (catch_up) ends[p] = high > low ? high : 0;  // 0: nothing to read
        rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), p)->offset =
            from_end ? high : RD_KAFKA_OFFSET_BEGINNING;
        starts.emplace_back(p, from_end ? high : 0);
    }
    {
        std::lock_guard lock(progress_mutex_);
        for (const auto& [p, o] : starts) progress_.insert_or_assign(p, o);
    }
    if (auto* e = rd_kafka_incremental_assign(rk_, l.get())) {
        error_name = rd_kafka_error_string(e);
        rd_kafka_error_destroy(e);
        return false;
    }
    if (catch_up) {
        std::lock_guard lock(ready_mutex_);
        not_ready_ = "reading the " + what_ + " '" + topic + "' up to its end offsets";
        catch_up_ = std::move(ends);
        catch_up_started_ = true;
        catch_up_since_ = std::chrono::steady_clock::now();
    }
    std::vector<proxy::topic_partition> list;
    for (const auto p : parts) {
        reply_assigned_.insert(p);
        list.push_back({topic, p});
    }
    {
        std::lock_guard lock(lag_mutex_);
        for (const auto& tp : list) assigned_.insert_or_assign(tp, -1);
    }
    std::vector<std::string> where;
    for (const auto& [p, o] : starts) {
        where.push_back(std::to_string(p) + (from_end ? "@" + std::to_string(o) : "@beginning"));
    }
    log::info(from_end   ? what_ + " assigned from its end offsets"
              : catch_up ? what_ + " assigned from its beginning"
                         : what_ + " partitions added",
              {{"topic", topic}, {"partitions", where}});
    asio::post(strand_, [this, alive = std::weak_ptr<int>(alive_), list = std::move(list)] {
        if (!alive.lock() || closing_ || !listener_) return;
        try {
            listener_->on_assigned(list);
        } catch (const std::exception& e) {
            log::error("reply listener threw", {{"error", e.what()}});
        }
    });
    return true;
}

}  // namespace consumer_detail

using consumer_detail::consumer_conf;
using consumer_detail::consumer_impl;
namespace asio = boost::asio;
namespace log = proxy::log;

std::shared_ptr<proxy::consumer> make_reply_consumer(asio::any_io_executor strand, const config::kafka_config& kafka,
                                                     const config::replies_config& replies,
                                                     const std::string& bootstrap, std::string& error) {
    // librdkafka needs a group.id for a consumer instance; it is never joined (no subscribe) and
    // nothing is committed: a fresh name per start, so no committed offset can ever apply.
    rd_kafka_conf_t* conf =
        consumer_conf({{"client.id", "handoff-replies"}, {"fetch.wait.max.ms", "100"}}, kafka.properties, {},
                      {{"bootstrap.servers", bootstrap},
                       {"group.id", "handoff-replies-" + proxy::make_uuid_v7()},
                       {"enable.auto.commit", "false"},
                       {"enable.auto.offset.store", "false"},
                       {"enable.partition.eof", "true"},  // the end reached is progress too (fetch_watch)
                       {"auto.offset.reset", "earliest"},
                       {"allow.auto.create.topics", "false"}},
                      error);
    if (!conf) {
        error = "replies: " + error;
        return nullptr;
    }
    auto c = std::make_shared<consumer_impl>(strand, replies);
    if (kafka.embedded) c->skip_topic_checks();
    if (!c->init(conf, error)) {
        error = "replies: " + error;
        return nullptr;
    }
    log::info("kafka reply consumer created", {{"topic", replies.topic}});
    return c;
}

std::shared_ptr<proxy::consumer> make_state_consumer(asio::any_io_executor strand, const config::kafka_config& kafka,
                                                     const config::state_config& state,
                                                     std::chrono::milliseconds key_ttl, const std::string& bootstrap,
                                                     std::string& error) {
    rd_kafka_conf_t* conf =
        consumer_conf({{"client.id", "handoff-state"}, {"fetch.wait.max.ms", "100"}}, kafka.properties, {},
                      {{"bootstrap.servers", bootstrap},
                       {"group.id", "handoff-state-" + proxy::make_uuid_v7()},
                       {"enable.auto.commit", "false"},
                       {"enable.auto.offset.store", "false"},
                       {"enable.partition.eof", "true"},  // an end reached, even when its last records were removed
                       {"auto.offset.reset", "earliest"},
                       {"allow.auto.create.topics", "false"}},
                      error);
    if (!conf) {
        error = "state: " + error;
        return nullptr;
    }
    config::replies_config spec;
    spec.topic = state.topic;
    spec.create.enabled = true;
    spec.create.partitions = state.partitions;
    spec.create.replication_factor = state.replication_factor;
    spec.create.retention = state.retention;
    spec.refresh_interval = state.refresh_interval;
    // Compacted (the newest record of each entry is kept) and deleted after the retention (an entry
    // nobody rewrites leaves); segments roll within the hour, so that both can act on them.
    // Compaction only once a record is older than idempotency.ttl: every record about a key shares
    // its record key, so compacting a live key would keep its completion and drop the claim before
    // it (or keep a losing claim and drop the winner's), and a replica that reads the topic after
    // that would decide the key differently from the others. Older than the ttl, the key is expired
    // on every replica whatever its records say.
    const auto segment = std::min<long long>(state.retention.count(), 3'600'000);
    auto c = std::make_shared<consumer_impl>(
        strand, spec, "state topic", /*from_beginning=*/true,
        consumer_detail::property_list{{"cleanup.policy", "compact,delete"},
                                       {"segment.ms", std::to_string(segment)},
                                       {"min.compaction.lag.ms", std::to_string(key_ttl.count())}});
    c->require_compaction_lag(key_ttl);
    if (kafka.embedded) c->skip_topic_checks();
    if (!c->init(conf, error)) {
        error = "state: " + error;
        return nullptr;
    }
    log::info("kafka state consumer created", {{"topic", state.topic}});
    return c;
}

}  // namespace handoff::adapters::kafka
