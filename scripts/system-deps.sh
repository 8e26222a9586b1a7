#!/bin/sh
# Installs the Debian packages Garrison relies on, when they are missing.
#   libarchive13   runtime of libarchive-c (cpio, cab, rar, iso, ar, ... members)
#   clamav         clamscan and sigtool: tests compare our verdicts with ClamAV's on the same files
#   yara           the yara CLI, only needed by bench/engine.py
#   chromium       the headless browser of the console tests (tests/integration/test_console_browser.py)
#   libreoffice-writer-nogui, fonts-liberation2
#                  the quarterly report's PDF (the DOCX printed by LibreOffice; Liberation Serif for Times New Roman)
# Usage: scripts/system-deps.sh [extra packages...]
set -eu
want="libarchive13 clamav chromium libreoffice-writer-nogui fonts-liberation2 $*"
missing=""
for pkg in $want; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
echo "Installing Debian packages:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
