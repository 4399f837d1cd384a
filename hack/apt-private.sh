# apt-private.sh, sourced: `apt_private DIR LINE` points the array `apt` at a
# private apt configuration in DIR whose only source is LINE (say, "deb
# http://deb.debian.org/debian forky main") and fetches its index, so that
# `apt-get "${apt[@]}" download|source …` takes packages of another Debian
# release while the machine's own sources and state are left alone.
apt_private() {
  local dir=$1 line=$2
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  echo "$line" >"$dir/sources.list"
  apt=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" -qq update
}
