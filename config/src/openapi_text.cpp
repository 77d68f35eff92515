#include "openapi_text.hpp"

#include "values.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>
#include <vector>

namespace handoff::config::detail {
namespace {

bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }

}  // namespace

// Collapses runs of `sep`, drops leading characters that are not alphanumeric and trailing
// separators, and cuts to `max` characters.
std::string tidy(std::string_view in, char sep, std::size_t max) {
    std::string out;
    for (char c : in) {
        if (c == sep && (out.empty() || out.back() == sep)) continue;
        if (out.empty() && !is_alnum(c)) continue;
        out += c;
    }
    if (out.size() > max) out.resize(max);
    while (!out.empty() && !is_alnum(out.back())) out.pop_back();
    return out;
}

// "uploadImage" -> "upload-image", "Swagger Petstore" -> "swagger-petstore": lower-case words of
// [a-z0-9] joined with '-', for topic names (Kafka names are case-sensitive; lower case avoids
// two topics that differ only in case). Dots are kept ("v1.0").
std::string kebab(std::string_view in) {
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (is_upper(c) && i > 0 && (is_alnum(in[i - 1]) && !is_upper(in[i - 1]))) out += '-';
        if (is_alnum(c) || c == '.') {
            out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        } else {
            out += '-';
        }
    }
    return tidy(out, '-', std::string::npos);
}

// A YAML double-quoted scalar: safe for any text (names, paths with '{', '${...}').
std::string quote(std::string_view s) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out = "\"";
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// Text for a comment: one line, whitespace collapsed, control characters dropped, shortened.
std::string one_line(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (!out.empty() && out.back() != ' ') out += ' ';
        } else if (u >= 0x20 && u != 0x7f) {
            out += c;
        }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    if (out.size() > max) {
        out.resize(max - 3);
        // Do not cut a UTF-8 sequence in half.
        while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
        if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
        out += "...";
    }
    return out;
}

// `text` as comment lines of at most comment_width columns, each starting with `indent` + "# ".
// Leading spaces of `text` are kept on the first line; `hang` indents continuation lines.
std::string comment(std::string_view indent, std::string_view text, std::string_view hang) {
    const std::string line_start = std::string(indent) + "# ";
    std::string out;
    // Leading spaces of `text` indent its first line (a list item under a paragraph).
    std::string line = line_start + std::string(text.substr(0, std::min(text.find_first_not_of(' '), text.size())));
    bool first_word = true;
    // Words, with a `code span` kept whole so a wrapped line never splits it.
    std::vector<std::string> words;
    std::istringstream in{std::string(text)};
    bool open = false;
    for (std::string w; in >> w;) {
        if (open) {
            words.back() += " " + w;
        } else {
            words.push_back(w);
        }
        if (std::count(w.begin(), w.end(), '`') % 2 == 1) open = !open;
    }
    for (const auto& w : words) {
        if (!first_word && line.size() + 1 + w.size() > comment_width) {
            out += line + "\n";
            line = line_start + std::string(hang);
            first_word = true;
        }
        if (!first_word) line += ' ';
        line += w;
        first_word = false;
    }
    return out + line + "\n";
}

}  // namespace handoff::config::detail
