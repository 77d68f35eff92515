// OpenAPI 3.x -> a starting Handoff config, first half: `reader` walks the document once into an
// `openapi_plan` (names, paths, suggestions); openapi_write.cpp prints the plan. yaml-cpp stays
// inside this file.
#include "handoff/config/kafka_rules.hpp"
#include "handoff/config/openapi.hpp"

#include "openapi_text.hpp"
#include "values.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <set>

namespace handoff::config {
namespace {

// The operation keys of an OpenAPI 3.0/3.1 path item, in the order the spec lists them.
constexpr const char* operation_keys[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};

// The loader's character classes (values.hpp): the generated config must pass its rules.
using detail::is_alnum;
using detail::is_digit;
using detail::is_pchar;
using detail::lower;
using detail::upper;

// Names and limits shared with the writer (openapi_text.hpp).
using detail::kebab;
using detail::max_name;
using detail::max_service;
using detail::max_topic;
using detail::one_line;
using detail::tidy;

// Route and topic names share their characters: [A-Za-z0-9._-].
bool is_name_char(char c) { return is_topic_char(c); }

// ---- YAML access without yaml-cpp's inserting operator[] ------------------------------------

YAML::Node child(const YAML::Node& n, std::string_view key) {
    if (!n.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    for (auto it = n.begin(); it != n.end(); ++it) {
        if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
    }
    return YAML::Node(YAML::NodeType::Undefined);
}

std::string scalar_or(const YAML::Node& n, std::string fallback = {}) {
    return n.IsDefined() && n.IsScalar() ? n.Scalar() : fallback;
}

bool is_true(const YAML::Node& n) { return n.IsDefined() && n.IsScalar() && lower(n.Scalar()) == "true"; }

// RFC 6901 token unescaping plus the percent-decoding of a URI fragment ("#/paths/~1pet").
std::string pointer_token(std::string_view t) {
    std::string pct;
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '%' && i + 2 < t.size() && std::isxdigit(static_cast<unsigned char>(t[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(t[i + 2]))) {
            pct += static_cast<char>(std::stoi(std::string(t.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            pct += t[i];
        }
    }
    std::string out;
    for (std::size_t i = 0; i < pct.size(); ++i) {
        if (pct[i] == '~' && i + 1 < pct.size() && (pct[i + 1] == '0' || pct[i + 1] == '1')) {
            out += pct[i + 1] == '0' ? '~' : '/';
            ++i;
        } else {
            out += pct[i];
        }
    }
    return out;
}

// Follows local `$ref`s ("#/components/responses/NotFound"). An external or dangling ref
// resolves to Undefined: callers treat what they cannot see conservatively.
// Nodes are rebound with reset(), never assigned: yaml-cpp's operator= on a defined node
// overwrites the node it refers to, i.e. it would edit the document being read.
YAML::Node resolve(const YAML::Node& root, YAML::Node n) {
    for (int depth = 0; depth < 32; ++depth) {
        const YAML::Node ref = child(n, "$ref");
        if (!ref.IsDefined()) return n;
        const std::string r = scalar_or(ref);
        if (r.rfind("#/", 0) != 0) return YAML::Node(YAML::NodeType::Undefined);
        YAML::Node cur = root;
        std::size_t start = 2;
        while (true) {
            const auto slash = r.find('/', start);
            const std::string token = pointer_token(
                std::string_view(r).substr(start, slash == std::string::npos ? std::string::npos : slash - start));
            if (cur.IsSequence()) {
                char* end = nullptr;
                const unsigned long i = std::strtoul(token.c_str(), &end, 10);
                const YAML::Node& seq = cur;
                cur.reset((!token.empty() && *end == '\0' && i < seq.size()) ? YAML::Node(seq[i])
                                                                             : YAML::Node(YAML::NodeType::Undefined));
            } else {
                cur.reset(child(cur, token));
            }
            if (!cur.IsDefined() || slash == std::string::npos) break;
            start = slash + 1;
        }
        if (!cur.IsDefined()) return cur;
        n.reset(cur);
    }
    return YAML::Node(YAML::NodeType::Undefined);  // a cycle of refs
}

// ---- paths ----------------------------------------------------------------------------------

std::string param_ident(std::string_view name) {
    std::string out;
    for (char c : name) out += (is_alnum(c) || c == '_') ? c : '_';
    if (out.empty() || is_digit(out[0])) out.insert(out.begin(), '_');
    return out;
}

struct mapped_path {
    std::string path;                 // Handoff template (without the prefix)
    std::string shape;                // parameters erased, for duplicate detection
    std::vector<std::string> params;  // Handoff parameter names, in order
    std::vector<std::string> notes;
};

// The Handoff form of an OpenAPI path template, or the reason there is none.
std::optional<mapped_path> map_path(const std::string& p, std::string& why) {
    if (p.empty() || p[0] != '/') {
        why = "the path does not start with '/'";
        return std::nullopt;
    }
    mapped_path out;
    std::size_t start = 1;
    while (true) {
        const auto slash = p.find('/', start);
        const bool last = slash == std::string::npos;
        const std::string seg = p.substr(start, last ? std::string::npos : slash - start);
        out.path += '/';
        out.shape += '/';
        if (seg.empty()) {
            if (!last) {
                why = "the path has an empty segment ('//')";
                return std::nullopt;
            }
        } else if (seg.find_first_of("{}") != std::string::npos) {
            const std::string name = seg.size() >= 2 ? seg.substr(1, seg.size() - 2) : "";
            if (seg.front() != '{' || seg.back() != '}' || name.empty() ||
                name.find_first_of("{}") != std::string::npos) {
                why = "segment '" + seg +
                      "' mixes a parameter with other text; Handoff matches a parameter as a whole segment";
                return std::nullopt;
            }
            std::string id = param_ident(name);
            if (std::find(out.params.begin(), out.params.end(), id) != out.params.end()) {
                const std::string base = id;
                for (int n = 2; std::find(out.params.begin(), out.params.end(), id) != out.params.end(); ++n) {
                    id = base + "_" + std::to_string(n);
                }
            }
            if (id != name) out.notes.push_back("path parameter '" + name + "' is written {" + id + "} here");
            out.params.push_back(id);
            out.path += "{" + id + "}";
            out.shape += "{}";
        } else if (const auto bad = std::find_if_not(seg.begin(), seg.end(), is_pchar); bad != seg.end()) {
            why = std::string("character '") + *bad + "' in segment '" + seg +
                  "' is not allowed in a Handoff path (RFC 3986 pchar)";
            return std::nullopt;
        } else {
            out.path += seg;
            out.shape += seg;
        }
        if (last) break;
        start = slash + 1;
    }
    return out;
}

// The path prefix from a `servers` list: servers[0].url when it is a relative path ("/api/v3",
// server variables replaced by their defaults), "" otherwise. `why` explains a URL not used.
std::string server_prefix(const YAML::Node& servers, std::string& url, std::string& why) {
    url.clear();
    if (!servers.IsDefined() || !servers.IsSequence() || servers.size() == 0) return "";
    const YAML::Node first = servers[0];
    url = scalar_or(child(first, "url"));
    std::string u;
    const YAML::Node vars = child(first, "variables");
    for (std::size_t i = 0; i < url.size(); ++i) {
        if (url[i] != '{') {
            u += url[i];
            continue;
        }
        const auto close = url.find('}', i);
        if (close == std::string::npos) {
            why = "servers[0].url has an unterminated '{'";
            return "";
        }
        const std::string name = url.substr(i + 1, close - i - 1);
        const YAML::Node def = child(child(vars, name), "default");
        if (!def.IsDefined() || !def.IsScalar()) {
            why = "server variable '" + name + "' has no default";
            return "";
        }
        u += def.Scalar();
        i = close;
    }
    if (u.find("://") != std::string::npos || u.rfind("//", 0) == 0) {
        why = "it is an absolute URL (where the API is published, not necessarily what the local service serves)";
        return "";
    }
    if (u.empty() || u[0] != '/') {
        if (!u.empty()) why = "it is relative to the document's own location, which is unknown here";
        return "";
    }
    if (const auto q = u.find_first_of("?#"); q != std::string::npos) u.resize(q);
    while (!u.empty() && u.back() == '/') u.pop_back();
    std::string seg_why;
    const auto m = map_path(u.empty() ? "/" : u, seg_why);
    if (!m || !m->params.empty()) {
        why = m ? "its path has a template left after substituting variables" : seg_why;
        return "";
    }
    return u;
}

// ---- the reader -----------------------------------------------------------------------------

class reader {
public:
    explicit reader(std::string file) : file_(std::move(file)) {}

    openapi_plan_result run(std::string_view text) {
        openapi_plan_result out;
        YAML::Node root;
        try {
            root = YAML::Load(std::string(text));
        } catch (const YAML::Exception& e) {
            fail(e.mark, "", "not readable as YAML or JSON: " + e.msg);
            out.errors = std::move(errors_);
            return out;
        }
        openapi_plan plan;
        plan.file = file_;
        read(root, plan);
        if (errors_.empty()) {
            out.value = std::move(plan);
        } else {
            out.errors = std::move(errors_);
        }
        return out;
    }

private:
    std::string file_;
    std::vector<config_error> errors_;
    std::set<std::string> names_;
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> shapes_;  // shape -> (method, route)

    void fail(const YAML::Mark& m, std::string path, std::string message) {
        const bool placed = m.line >= 0;
        errors_.push_back(
            {file_, placed ? m.line + 1 : 0, placed ? m.column + 1 : 0, std::move(path), std::move(message)});
    }

    void read(const YAML::Node& root, openapi_plan& plan) {
        if (!root.IsDefined() || root.IsNull()) {
            fail(YAML::Mark::null_mark(), "", "the document is empty (expected an OpenAPI 3.x document)");
            return;
        }
        if (!root.IsMap()) {
            fail(root.Mark(), "", "not an OpenAPI document: a map is expected at the top level");
            return;
        }
        if (const YAML::Node sw = child(root, "swagger"); sw.IsDefined()) {
            fail(sw.Mark(), "swagger",
                 "a Swagger " + scalar_or(sw, "2.0") +
                     " document; routes init reads OpenAPI 3.x (convert it to OpenAPI 3 first)");
            return;
        }
        const YAML::Node version = child(root, "openapi");
        if (!version.IsDefined()) {
            fail(root.Mark(), "", "not an OpenAPI 3.x document: the 'openapi' field is missing");
            return;
        }
        plan.openapi_version = scalar_or(version);
        if (plan.openapi_version.rfind("3.", 0) != 0) {
            fail(version.Mark(), "openapi", "not an OpenAPI 3.x document: openapi is '" + plan.openapi_version + "'");
            return;
        }
        const YAML::Node info = child(root, "info");
        plan.title = one_line(scalar_or(child(info, "title")));
        plan.api_version = one_line(scalar_or(child(info, "version")));
        plan.service = tidy(kebab(plan.title), '-', max_service);
        if (plan.service.empty()) plan.service = "service";

        plan.prefix = server_prefix(child(root, "servers"), plan.server_url, plan.server_note);

        const YAML::Node paths = child(root, "paths");
        if (!paths.IsDefined() || paths.IsNull() || (paths.IsMap() && paths.size() == 0)) {
            fail(paths.IsDefined() ? paths.Mark() : root.Mark(), "paths",
                 "no paths: the document defines no operations to route");
            return;
        }
        if (!paths.IsMap()) {
            fail(paths.Mark(), "paths", "'paths' must be a map of path templates");
            return;
        }
        std::size_t operations = 0;
        for (auto it = paths.begin(); it != paths.end(); ++it) {
            const std::string p = scalar_or(it->first);
            if (p.rfind("x-", 0) == 0) continue;  // specification extensions
            const YAML::Node item = resolve(root, it->second);
            operations += read_path_item(root, p, item, plan);
        }
        if (operations == 0) fail(paths.Mark(), "paths", "no paths: no operation is defined under 'paths'");
    }

    std::size_t read_path_item(const YAML::Node& root, const std::string& p, const YAML::Node& item,
                               openapi_plan& plan) {
        if (!item.IsDefined() || !item.IsMap()) {
            if (!item.IsDefined())
                plan.skipped.push_back({"*", p, "the path item is an external or unresolvable $ref"});
            return 0;
        }
        bool has_head = false;
        std::size_t count = 0;
        for (auto it = item.begin(); it != item.end(); ++it) {
            if (scalar_or(it->first) == "head") has_head = true;
        }
        for (auto it = item.begin(); it != item.end(); ++it) {
            const std::string key = scalar_or(it->first);
            if (std::find_if(std::begin(operation_keys), std::end(operation_keys),
                             [&](const char* k) { return key == k; }) == std::end(operation_keys)) {
                continue;
            }
            ++count;
            read_operation(root, p, item, upper(key), it->second, has_head, plan);
        }
        return count;
    }

    void read_operation(const YAML::Node& root, const std::string& p, const YAML::Node& item, const std::string& method,
                        const YAML::Node& op, bool path_has_head, openapi_plan& plan) {
        // Path: the most specific `servers` wins (operation, path item, document).
        std::string prefix = plan.prefix;
        std::vector<std::string> notes;
        for (const YAML::Node& holder : {op, item}) {
            if (const YAML::Node s = child(holder, "servers"); s.IsDefined() && s.IsSequence() && s.size() > 0) {
                std::string url, why;
                prefix = server_prefix(s, url, why);
                if (!why.empty())
                    notes.push_back("its own servers[0].url '" + url + "' gives no path prefix: " + why);
                else if (prefix != plan.prefix)
                    notes.push_back("path prefix '" + prefix + "' from its own servers[0].url");
                break;
            }
        }
        std::string why;
        auto mapped = map_path(p, why);
        if (!mapped) {
            plan.skipped.push_back({method, p, why});
            return;
        }
        notes.insert(notes.end(), mapped->notes.begin(), mapped->notes.end());
        const std::string path = prefix + mapped->path;
        const std::string shape = prefix + mapped->shape;

        std::vector<std::string> methods{method};
        if (method == "GET" && !path_has_head) methods.push_back("HEAD");
        auto& taken = shapes_[shape];
        for (const auto& [m, other] : taken) {
            if (m == method) {
                plan.skipped.push_back({method, p, "same path shape and method as route '" + other + "'"});
                return;
            }
        }
        if (methods.size() == 2 &&
            std::any_of(taken.begin(), taken.end(), [](const auto& t) { return t.first == "HEAD"; })) {
            methods.pop_back();
        }

        openapi_route r;
        r.operation_id = scalar_or(child(op, "operationId"));
        r.method = method;
        r.methods = methods;
        r.openapi_path = p;
        r.path = path;
        r.summary = one_line(scalar_or(child(op, "summary")));
        r.deprecated = is_true(child(op, "deprecated"));
        r.notes = std::move(notes);
        r.name = unique_name(r.operation_id, method, p);
        for (const auto& m : methods) taken.emplace_back(m, r.name);

        suggestion_input in;
        in.method = method;
        const YAML::Node responses = resolve(root, child(op, "responses"));
        if (responses.IsDefined() && responses.IsMap()) {
            for (auto it = responses.begin(); it != responses.end(); ++it) {
                suggestion_input::response resp;
                resp.code = upper(scalar_or(it->first));
                if (resp.code == "DEFAULT") resp.code = "default";
                const YAML::Node body = resolve(root, it->second);
                if (!body.IsDefined()) {
                    // An external $ref: assume the worst for the caller (a body it reads).
                    resp.has_content = true;
                } else {
                    const YAML::Node content = child(body, "content");
                    resp.has_content = content.IsDefined() && content.IsMap() && content.size() > 0;
                    const YAML::Node headers = child(body, "headers");
                    if (headers.IsDefined() && headers.IsMap()) {
                        for (auto h = headers.begin(); h != headers.end(); ++h) {
                            if (lower(scalar_or(h->first)) == "location") resp.has_location = true;
                        }
                    }
                }
                in.responses.push_back(std::move(resp));
            }
        }
        const auto s = suggest_mode(in);
        r.suggestion = s.suggestion;
        r.reason = s.reason;
        r.success_status = s.success_status;
        if (r.suggestion != openapi_suggestion::none) {
            std::string resource;
            std::size_t start = 1;
            while (start <= p.size()) {
                const auto slash = p.find('/', start);
                const std::string seg = p.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
                if (!seg.empty() && seg.front() != '{') {
                    const auto k = kebab(seg);
                    if (!k.empty()) resource += (resource.empty() ? "" : ".") + k;
                }
                if (slash == std::string::npos) break;
                start = slash + 1;
            }
            r.topic = resource.empty() ? plan.service : plan.service + "." + resource;
            if (r.topic.size() > max_topic) r.topic = tidy(r.topic.substr(0, max_topic), '.', max_topic);
            r.key = mapped->params.empty() ? "correlation" : "path:" + mapped->params.back();
        }
        plan.routes.push_back(std::move(r));
    }

    std::string unique_name(const std::string& operation_id, const std::string& method, const std::string& p) {
        std::string base = route_name_from_operation_id(operation_id);
        if (base.empty()) base = route_name_from_method_path(method, p);
        std::string name = base;
        for (int n = 2; names_.count(name); ++n) {
            const std::string suffix = "-" + std::to_string(n);
            name = tidy(base.substr(0, max_name - suffix.size()), '-', max_name - suffix.size()) + suffix;
        }
        names_.insert(name);
        return name;
    }
};

}  // namespace

std::string route_name_from_operation_id(std::string_view operation_id) {
    std::string s;
    for (char c : operation_id) s += is_name_char(c) ? c : '-';
    return tidy(s, '-', max_name);
}

std::string route_name_from_method_path(std::string_view method, std::string_view openapi_path) {
    std::string s = lower(std::string(method));
    bool any = false;
    for (char c : openapi_path) {
        if (c == '/') {
            s += '-';
        } else if (c == '{' || c == '}') {
            continue;
        } else {
            s += is_name_char(c) ? c : '-';
            any = true;
        }
    }
    if (!any) s += "-root";
    std::string out = tidy(s, '-', max_name);
    return out.empty() ? "route" : out;
}

suggestion_output suggest_mode(const suggestion_input& in) {
    suggestion_output out;
    const std::string& m = in.method;
    if (m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE") {
        out.reason = "a read: the caller needs the service's answer, so it stays forward";
        return out;
    }
    if (m != "POST" && m != "PUT" && m != "PATCH" && m != "DELETE") {
        out.reason = "not a method Handoff suggests converting";
        return out;
    }
    std::vector<const suggestion_input::response*> success;
    for (const auto& r : in.responses) {
        if (r.code.size() == 3 && r.code[0] == '2') success.push_back(&r);
    }
    bool from_default = false;
    if (success.empty()) {
        for (const auto& r : in.responses) {
            if (r.code == "default") success.push_back(&r), from_default = true;
        }
    }
    if (success.empty()) {
        out.suggestion = openapi_suggestion::event;
        out.reason =
            "no success response is documented, so the caller reads nothing but the status: "
            "202 Accepted at once is enough";
        return out;
    }
    std::string code_list;
    for (const auto* r : success) code_list += (code_list.empty() ? "" : ", ") + r->code;

    if (std::all_of(success.begin(), success.end(), [](const auto* r) { return r->code == "202"; })) {
        out.suggestion = openapi_suggestion::event;
        out.reason =
            "the service already answers 202 Accepted before the work is done; Handoff's 202 carries a "
            "correlation ID and a status URL in place of the service's body";
        return out;
    }
    std::vector<std::string> signals;
    for (const auto* r : success) {
        if (r->code == "201") {
            out.success_status = 201;
            signals.push_back("201 Created");
        }
        if (r->has_content)
            signals.push_back("a response body (" + (from_default ? std::string("default") : r->code) + ")");
        if (r->has_location)
            signals.push_back("a Location header (" + (from_default ? std::string("default") : r->code) + ")");
    }
    if (!signals.empty()) {
        std::string list;
        for (std::size_t i = 0; i < signals.size(); ++i) {
            list += (i == 0 ? "" : i + 1 == signals.size() ? " and " : ", ") + signals[i];
        }
        out.suggestion = openapi_suggestion::commit;
        out.reason = "the spec documents " + list +
                     ": the caller expects a confirmation, so answer only once Kafka has persisted the request";
        return out;
    }
    out.suggestion = openapi_suggestion::event;
    out.reason = (from_default ? std::string("the default response (no 2xx is documented) has")
                               : "the success responses (" + code_list + ") have") +
                 " no body, so the caller reads nothing but the status: 202 Accepted at once is enough";
    return out;
}

openapi_plan_result plan_from_openapi(std::string_view document, const std::string& file) {
    reader r(file);
    auto out = r.run(document);
    return out;
}

}  // namespace handoff::config
