"""Workbooks built part by part (faster than openpyxl for big ones): an .xlsx whose shared-strings table holds
n_strings distinct strings under a sheet of one row, the shape that costs openpyxl the most memory per byte."""

import io
import zipfile

from openpyxl import Workbook

SST_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
SST_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
SST_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def xlsx_with_shared_strings(path, n_strings: int) -> None:
    """Write the workbook to path; each string is 24 bytes of XML (<si><t>x0000000</t></si>)."""
    book = Workbook()
    book.active.append(["email", "points"])
    book.active.append(["a@b.example", 5])
    plain = io.BytesIO()
    book.save(plain)
    table = [f'<sst xmlns="{SST_NS}" count="{n_strings}" uniqueCount="{n_strings}">']
    table += [f"<si><t>x{i:07d}</t></si>" for i in range(n_strings)]
    table.append("</sst>")
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SST_TYPE}"/></Types>'.encode(),
                )
            if item.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    f'<Relationship Id="rIdSS" Type="{SST_REL}" Target="sharedStrings.xml"/></Relationships>'.encode(),
                )
            dst.writestr(item.filename, data)
        dst.writestr("xl/sharedStrings.xml", "".join(table).encode())
